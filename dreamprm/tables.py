"""Stage 8's last step (BoN/tables.py): Table 1 beside the paper's numbers, the aggregation ablation and the
scaling figure, from the results.json files BoN/pick.py writes. Reads nothing else; scores nothing."""
from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .aggregation import AGGREGATIONS
from .bon import BENCHMARK_NAMES, BENCHMARKS
from .cli import StageArgs
from .io import DataError, atomic_write_text, read_json

# SPEC section 4: the paper's Table 1 (accuracy %, BoN with N = 8, policy InternVL-2.5-8B-MPO). The one place
# these numbers live; `tables` prints this run's numbers beside them.
PAPER_TABLE = {
    "Base model (zero-shot)": {"wemath": 51.7, "mathvista": 65.4, "mathvision": 20.4, "mmvet": 55.9, "mmstar": 58.9},
    "Self-consistency": {"wemath": 56.4, "mathvista": 67.1, "mathvision": 20.7, "mmvet": 57.4, "mmstar": 59.6},
    "ORM": {"wemath": 56.9, "mathvista": 65.3, "mathvision": 20.5, "mmvet": 55.9, "mmstar": 60.1},
    "Vanilla PRM": {"wemath": 54.2, "mathvista": 67.2, "mathvision": 20.6, "mmvet": 58.9, "mmstar": 60.8},
    "CaR-PRM": {"wemath": 54.7, "mathvista": 67.5, "mathvision": 21.0, "mmvet": 60.6, "mmstar": 61.1},
    "s1-PRM": {"wemath": 57.1, "mathvista": 65.8, "mathvision": 20.2, "mmvet": 60.1, "mmstar": 60.4},
    "DreamPRM": {"wemath": 57.4, "mathvista": 68.9, "mathvision": 22.1, "mmvet": 61.4, "mmstar": 62.3},
}


@dataclass
class TablesConfig(StageArgs):
    """Table 1 (this run beside the paper), the aggregation ablation and figs/bon_scaling.png from BoN results."""
    runs: str = field(default="runs/bon", metadata={"help": "directory holding one results.json per run (<name>/)"})
    main: str = field(default="dreamprm", metadata={"help": "run of the DreamPRM row (and of the baselines)"})
    vanilla: str = field(default="vanilla", metadata={"help": "run of the Vanilla PRM row (left empty if absent)"})
    orm: str = field(default="orm", metadata={
        "help": "run of the ORM row: a trained ORM scored with BoN/score.py --unit response (left empty if absent)"})
    orm_proxy: str | None = field(default=None, metadata={
        "help": "run whose last-step score is the ablation row 'ORM proxy', never the ORM row (default: --main; "
                "none: no such row)"})
    n: int | None = field(default=None, metadata={"help": "N of Table 1 (default: the largest N evaluated)"})
    figs: str = field(default="figs", metadata={"help": "directory of bon_scaling.png"})


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.1f}"


def _mean(xs):
    return None if not xs or any(x is None for x in xs) else sum(xs) / len(xs)


def _grid(header: list[str], rows: list[list[str]], title: str, caption: str) -> tuple[str, str]:
    """The same table as Markdown and as LaTeX (booktabs)."""
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
    esc = lambda s: s.replace("%", r"\%").replace("_", r"\_").replace("—", "--")  # noqa: E731
    tex = ("\\begin{table}[t]\n\\centering\n\\caption{" + esc(caption) + "}\n\\begin{tabular}{l"
           + "c" * (len(header) - 1) + "}\n\\toprule\n" + " & ".join(map(esc, header)) + " \\\\\n\\midrule\n"
           + "".join(" & ".join(map(esc, r)) + " \\\\\n" for r in rows)
           + "\\bottomrule\n\\end{tabular}\n\\end{table}\n")
    return f"**{title}.** {caption}\n\n{md}", tex


def _proxy(main: str, orm_proxy: str | None) -> str | None:
    return None if orm_proxy == "none" else orm_proxy or main


def table1(results: dict, n: int | None = None, main: str = "dreamprm", vanilla: str = "vanilla",
           orm: str = "orm", orm_proxy: str | None = None) -> tuple[str, str]:
    """Table 1: accuracy at N per benchmark and method, each cell "this run (paper)". The ORM row is the trained
    ORM's (`orm`, scored per response); the last-step score of a PRM (`orm_proxy`, default `main`) is a
    separate ablation row with no paper number."""
    base = results[main]
    n = str(n or max(base["n"]))
    benches = [b for b in BENCHMARKS if b in base["benchmarks"]] + \
              [b for b in base["benchmarks"] if b not in BENCHMARKS]

    def ours(run, method):
        r = results.get(run)
        if r is None:
            return [None] * len(benches)
        method = method.format(agg=r["aggregation"])
        return [r["benchmarks"].get(b, {}).get("accuracy", {}).get(method, {}).get(n) for b in benches]

    proxy = _proxy(main, orm_proxy)
    name = "DreamPRM" if proxy == main else proxy
    spec = [("Base model (zero-shot)", main, "base"), ("Self-consistency", main, "self_consistency"),
            ("ORM", orm, "orm"), ("Vanilla PRM", vanilla, "prm:{agg}"), ("CaR-PRM", None, None),
            ("s1-PRM", None, None), ("DreamPRM", main, "prm:{agg}"), ("Oracle (pass@N)", main, "oracle")]
    if proxy:
        spec.insert(3, (f"ORM proxy: {name} last-step score (ablation)", proxy, "prm:last"))
    rows = []
    for label, run, method in spec:
        mine = ours(run, method) if run else [None] * len(benches)
        paper = [PAPER_TABLE.get(label, {}).get(b) for b in benches]
        cells = [f"{_fmt(a)} ({_fmt(p)})" for a, p in zip(mine, paper)]
        p_avg = _mean(paper) if label in PAPER_TABLE else None
        rows.append([label] + cells + [f"{_fmt(_mean(mine))} ({_fmt(p_avg)})"])
    caption = (f"Accuracy (%), best of N = {n}; each cell: this run (paper, N = 8, InternVL-2.5-8B-MPO). "
               f"PRM rows aggregate step scores with {base['aggregation']}; ORM = a trained outcome reward model "
               f"(run {orm}{'' if orm in results else ': none, row empty'}) scoring each whole response once"
               + (f"; ORM proxy = an ablation, not the paper's ORM: {name}'s score of the last step prefix alone"
                  if proxy else "")
               + "; base = mean single-sample accuracy; CaR-PRM and s1-PRM are not reproduced here.")
    return _grid(["Method"] + [BENCHMARK_NAMES.get(b, b) for b in benches] + ["Avg"], rows, "Table 1", caption)


def ablation(result: dict, n: int | None = None) -> tuple[str, str]:
    """Accuracy at N of every aggregation function per benchmark, for one run."""
    n = str(n or max(result["n"]))
    benches = [b for b in BENCHMARKS if b in result["benchmarks"]] + \
              [b for b in result["benchmarks"] if b not in BENCHMARKS]
    rows = []
    for how in AGGREGATIONS:
        accs = [result["benchmarks"][b]["accuracy"].get(f"prm:{how}", {}).get(n) for b in benches]
        label = how + (" (paper)" if how == "mean_log_odds" else "")
        rows.append([label] + [_fmt(a) for a in accs] + [_fmt(_mean(accs))])
    caption = f"Accuracy (%) of PRM best-of-{n} ({result['run']}) by step-score aggregation."
    return _grid(["Aggregation"] + [BENCHMARK_NAMES.get(b, b) for b in benches] + ["Avg"], rows,
                 "Aggregation ablation", caption)


def scaling_curves(results: dict, main: str, vanilla: str, orm: str = "orm") -> dict:
    """bench -> label -> {N: accuracy} for the scaling figure."""
    spec = [("DreamPRM", main, "prm:{agg}"), ("Vanilla PRM", vanilla, "prm:{agg}"), ("ORM", orm, "orm"),
            ("Self-consistency", main, "self_consistency"), ("Random pick", main, "random"),
            ("Oracle (pass@N)", main, "oracle"), ("Base model", main, "base")]
    curves: dict = defaultdict(dict)
    for label, run, method in spec:
        r = results.get(run)
        if r is None:
            continue
        for b, res in r["benchmarks"].items():
            acc = res["accuracy"].get(method.format(agg=r["aggregation"]))
            if acc:
                curves[BENCHMARK_NAMES.get(b, b)][label] = {int(k): v for k, v in acc.items()}
    return dict(curves)


def read_results(path: Path) -> dict:
    """A run's results.json (BoN/pick.py), checked: the keys the tables read, every accuracy None or a number in
    [0, 100]. A hand-edited or damaged file is one line naming it, never a table of NaN."""
    r = read_json(path, "results file")
    if not (isinstance(r, dict) and isinstance(r.get("benchmarks"), dict) and isinstance(r.get("n"), list)
            and r["n"] and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in r["n"])
            and isinstance(r.get("aggregation"), str)):
        raise DataError(f"{path}: not a BoN results file (BoN/pick.py writes one with run, aggregation, n, benchmarks)")
    for b, res in r["benchmarks"].items():
        acc = res.get("accuracy") if isinstance(res, dict) else None
        if not isinstance(acc, dict) or not all(isinstance(v, dict) for v in acc.values()):
            raise DataError(f"{path}: benchmark {b}: no accuracy per method and N")
        for m, by_n in acc.items():
            for n, v in by_n.items():
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                      or not math.isfinite(v) or not 0 <= v <= 100):
                    raise DataError(f"{path}: benchmark {b}, {m}, N = {n}: accuracy {v!r} is not a number in [0, 100]")
    return r


def write_tables(cfg: TablesConfig) -> dict:
    """BoN/tables.py: Markdown and LaTeX tables in --out (default <runs>/tables), figs/bon_scaling.png. Both
    outputs are locked and refused if they exist without --resume; the inputs are read before anything is written."""
    from .plots import plot_bon_scaling

    out = cfg.output(cfg.out or f"{cfg.runs}/tables", " (the tables are recomputed)", directory=True)
    fig_path = cfg.output(Path(cfg.figs) / "bon_scaling.png", " (the figure is recomputed)")
    root = cfg.resolve(cfg.runs)
    results = {p.parent.name: read_results(p) for p in sorted(root.glob("*/results.json"))}
    if cfg.main not in results:
        raise DataError(f"{root / cfg.main / 'results.json'}: not found (runs found: {', '.join(results) or 'none'}); "
                        "run BoN/score.py or BoN/pick.py first")
    if not results[cfg.main]["benchmarks"]:
        raise DataError(f"{root / cfg.main / 'results.json'}: no benchmark in it: nothing to tabulate")
    if cfg.orm in results and results[cfg.orm].get("unit") != "response":
        print(f"warning: run {cfg.orm!r} was not scored per response (BoN/score.py --unit response): "
              "its ORM cells stay empty")
    files, written = {}, {}
    md, tex = table1(results, cfg.n, cfg.main, cfg.vanilla, cfg.orm, cfg.orm_proxy)
    parts = [md]
    files.update({"table1.md": md, "table1.tex": tex})
    written["table1"] = out / "table1.md"
    for run in (cfg.main, cfg.vanilla):
        if run in results:
            md, tex = ablation(results[run], cfg.n)
            files.update({f"ablation_{run}.md": md, f"ablation_{run}.tex": tex})
            written[f"ablation_{run}"] = out / f"ablation_{run}.md"
            parts.append(md)
    for name, text in files.items():
        atomic_write_text(out / name, text)
    # drawn beside its place, then renamed: a reader never sees half a figure
    tmp = plot_bon_scaling(scaling_curves(results, cfg.main, cfg.vanilla, cfg.orm),
                           fig_path.with_name(f".{fig_path.stem}.tmp{fig_path.suffix}"))
    os.replace(tmp, fig_path)
    written["figure"] = fig_path
    print("\n".join(parts))
    print(f"wrote {out}/table1.md|.tex, ablation_*.md|.tex and {fig_path}")
    return written
