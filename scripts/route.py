"""Route a numbered launcher's options to the Python stages it runs (scripts/_common.sh calls this).

    python scripts/route.py 03_mc.sh MC/tree.py MC/estimate.py MC/train_data.py -- --path . --seed 1 --per_domain 5

prints bash assignments, one array per stage named after its file (`ARGS_tree=(...)`) plus `POSITIONAL=(...)`,
for `eval`. Each option goes to every stage whose config accepts it (`--seed` to all three, `--max_rollouts`
only to the estimation); an option no stage accepts is an error naming it. An option that names a different
file in each stage (`--out`) cannot be shared: the launcher's LINKS give it one meaning, else it is an error.

The option names are read from the stage scripts' source (the config dataclass given to `parse_args` and its
bases, with `ast`), not by importing them: importing a stage loads torch and takes seconds.
"""
from __future__ import annotations

import ast
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Launcher options that link two stages: the file one writes and the next reads.
LINKS = {
    "03_mc.sh": {
        "tree": [("MC/tree.py", "out"), ("MC/estimate.py", "tree")],
        "nodes": [("MC/estimate.py", "out"), ("MC/train_data.py", "nodes")],
    },
}
SHARED_FILE_OPTIONS = {"out"}  # the same name, a different file in each stage
POSITIONAL = {"02_rollouts.sh": 1}  # the dataset name


class RouteError(Exception):
    pass


def module_file(module: str, current: Path) -> Path:
    """The source file of an import, absolute (dreamprm.cli) or relative to `current` (.cli)."""
    if module.startswith("."):
        level = len(module) - len(module.lstrip("."))
        base = current.parent
        for _ in range(level - 1):
            base = base.parent
        parts, root = module.lstrip(".").split("."), base
    else:
        parts, root = module.split("."), REPO
    path = root.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def class_fields(path: Path, name: str) -> dict[str, str]:
    """{field: annotation} of dataclass `name` in `path`, bases first (as dataclasses order them)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    imported = {a.asname or a.name: (n.module if n.level == 0 else "." * n.level + (n.module or ""))
                for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    if name in classes:
        fields: dict[str, str] = {}
        for base in classes[name].bases:
            if isinstance(base, ast.Name):
                fields.update(class_fields(path, base.id))
        for stmt in classes[name].body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                fields[stmt.target.id] = ast.unparse(stmt.annotation)
        return fields
    if name in imported:
        return class_fields(module_file(imported[name], path), name)
    if name in ("object", "Generic"):
        return {}
    raise RouteError(f"{path}: cannot find class {name}")


def stage_fields(stage: str) -> dict[str, str]:
    """The options of a stage script: the fields of the class its `parse_args(Class, ...)` call parses."""
    path = REPO / stage
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "parse_args"
                and node.args and isinstance(node.args[0], ast.Name)):
            return class_fields(path, node.args[0].id)
    raise RouteError(f"{stage}: no parse_args(<config class>, ...) call found")


def kind(annotation: str) -> str:
    """How an option takes values: 'bool' (an optional true/false), 'list' (one or more), 'one'."""
    if annotation.replace(" ", "") in ("bool", "bool|None", "Optional[bool]"):
        return "bool"
    return "list" if annotation.startswith(("list[", "List[")) else "one"


BOOL_WORDS = {"true", "false", "yes", "no", "t", "f", "y", "n", "1", "0"}


def route(script: str, stages: list[str], args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    fields = {s: stage_fields(s) for s in stages}
    links = LINKS.get(script, {})
    routed: dict[str, list[str]] = {s: [] for s in stages}
    positional: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("--"):
            if len(positional) >= POSITIONAL.get(script, 0):
                raise RouteError(f"{script}: unexpected argument {token!r} (options start with --)")
            positional.append(token)
            continue
        name, eq, inline = token[2:].partition("=")
        key = name.replace("-", "_")  # HfArgumentParser accepts --max-rollouts for --max_rollouts too
        negated = key.startswith("no_") and key[3:] in {f for fs in fields.values() for f in fs}
        field_name = key[3:] if negated else key
        takers = [s for s in stages if field_name in fields[s]]
        if field_name in links:
            targets = [(s, option) for s, option in links[field_name] if s in fields]
            annotation = fields[targets[0][0]].get(targets[0][1], "str") if targets else "str"
        elif not takers:
            raise RouteError(f"{script}: unknown option {token.split('=')[0]} (not an option of "
                             f"{', '.join(stages)}; see --help)")
        elif field_name in SHARED_FILE_OPTIONS and len(takers) > 1:
            hint = f"; use {', '.join('--' + k for k in links)}" if links else ""
            raise RouteError(f"{script}: --{field_name} is ambiguous: each of {', '.join(takers)} writes its own "
                             f"file{hint}, or run the stages one by one")
        else:
            targets = [(s, field_name) for s in takers]
            annotation = fields[takers[0]][field_name]
        # the option's values
        how = "bool" if negated else kind(annotation)
        values: list[str] = [inline] if eq else []
        if not eq:
            if how == "one":
                if i >= len(args):
                    raise RouteError(f"{script}: {token} needs a value")
                values, i = [args[i]], i + 1
            elif how == "list":
                while i < len(args) and not args[i].startswith("--"):
                    values.append(args[i])
                    i += 1
            elif i < len(args) and args[i].lower() in BOOL_WORDS and not negated:
                values, i = [args[i]], i + 1
        for stage, option in targets:
            flag = f"--{'no_' if negated else ''}{option}"
            routed[stage] += [f"{flag}={inline}"] if eq else [flag, *values]
    return routed, positional


def var(stage: str) -> str:
    return "ARGS_" + "".join(c if c.isalnum() else "_" for c in Path(stage).stem)


def main(argv: list[str]) -> int:
    if "--" not in argv or len(argv) < 2:
        print("usage: route.py SCRIPT STAGE... -- ARG...", file=sys.stderr)
        return 2
    cut = argv.index("--")
    script, stages, args = argv[0], argv[1:cut], argv[cut + 1:]
    try:
        routed, positional = route(script, stages, args)
    except (RouteError, OSError, SyntaxError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for stage in stages:
        print(f"{var(stage)}=({' '.join(map(shlex.quote, routed[stage]))})")
    print(f"POSITIONAL=({' '.join(map(shlex.quote, positional))})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
