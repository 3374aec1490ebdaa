"""Splitting a long stage over several GPUs or machines, and merging the pieces back.

`--shard i/n` gives process i the i-th contiguous block of the input records (by record order), so the
shards' outputs, concatenated in shard order, are exactly what one process would have written. Each run
writes its output in input order (`finalize`, after any resume) and then a `.done` marker; `merge` refuses
shards without one, so an unfinished shard can never be merged silently.

    python -m dreamprm.shards --out runs/rollouts/mathvista.jsonl      # finds mathvista.shard-*-of-N.jsonl
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from .cli import StageArgs, parse_args
from .io import DataError, atomic_write_text, iter_jsonl, lock_output

T = TypeVar("T")


def parse_shard(spec: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {spec!r}")
    return int(m.group(1)), int(m.group(2))


def shard_field():
    """The --shard option of every stage that can be split over processes."""
    return field(default="0/1", metadata={"help": "i/n: process the i-th of n contiguous blocks of the input "
                                                  "(several GPUs or machines), then merge (python -m dreamprm.shards)"})


def spec(value: str) -> tuple[int, int]:
    """--shard parsed, as a one-line input error when malformed."""
    try:
        return parse_shard(value)
    except ValueError as e:
        raise DataError(str(e)) from None


def select(records: Sequence[T], i: int, n: int) -> list[T]:
    """The i-th of n contiguous blocks (sizes differ by at most one)."""
    return list(records[len(records) * i // n: len(records) * (i + 1) // n])


def shard_path(path: str | Path, i: int, n: int) -> Path:
    path = Path(path)
    if n == 1:
        return path
    return path.with_name(f"{path.stem}.shard-{i}-of-{n}{path.suffix}")


def done_marker(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".done")


def finalize(path: str | Path, order: Callable[[dict], object], summary: dict | None = None) -> int:
    """Rewrite `path` in input order if a resume appended records out of order; then mark it done. The marker
    is the run's JSON summary: {"records": n, **summary} (e.g. the skipped input records)."""
    path = Path(path)
    records = [r for _, r in iter_jsonl(path)] if path.exists() else []
    keys = [order(r) for r in records]
    if keys != sorted(keys):
        ranked = sorted(zip(keys, range(len(records))))
        atomic_write_text(path, "".join(json.dumps(records[j], ensure_ascii=False) + "\n" for _, j in ranked))
    elif not path.exists():
        atomic_write_text(path, "")
    atomic_write_text(done_marker(path), json.dumps({"records": len(records), **(summary or {})}, indent=1) + "\n")
    return len(records)


def read_marker(path: str | Path) -> dict:
    """The JSON summary a finished run left beside `path` ({} if none)."""
    m = done_marker(path)
    try:
        return json.loads(m.read_text(encoding="utf-8")) if m.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def find_shards(path: str | Path) -> list[Path]:
    path = Path(path)
    pattern = re.compile(re.escape(path.stem) + r"\.shard-(\d+)-of-(\d+)" + re.escape(path.suffix))
    found = {}
    for p in path.parent.glob(f"{path.stem}.shard-*-of-*{path.suffix}"):
        if m := pattern.fullmatch(p.name):
            found[(int(m.group(2)), int(m.group(1)))] = p
    counts = sorted({n for n, _ in found})
    if not counts:
        raise DataError(f"{path}: no shard files {path.stem}.shard-<i>-of-<n>{path.suffix} beside it")
    if len(counts) > 1:
        raise DataError(f"{path}: shard files of different splits ({', '.join(f'of-{n}' for n in counts)}); "
                        "remove the stale ones")
    n = counts[0]
    missing = [i for i in range(n) if (n, i) not in found]
    if missing:
        raise DataError(f"{path}: shard(s) {', '.join(map(str, missing))} of {n} missing")
    return [found[(n, i)] for i in range(n)]


def merge(path: str | Path, shards: list[Path] | None = None) -> int:
    """Concatenate finished shards in shard order into `path` (atomic); returns the record count."""
    path = Path(path)
    shards = shards or find_shards(path)
    unfinished = [str(p) for p in shards if not done_marker(p).exists()]
    if unfinished:
        raise DataError(f"shard(s) not finished (no .done marker): {', '.join(unfinished)}; "
                        "rerun them with --resume")
    text = "".join(p.read_text(encoding="utf-8") for p in shards)
    atomic_write_text(path, text)
    n = sum(1 for line in text.splitlines() if line.strip())
    per_shard = {p.name: read_marker(p) for p in shards}
    atomic_write_text(done_marker(path), json.dumps({"records": n, "shards": per_shard}, indent=1) + "\n")
    return n


@dataclass
class MergeArgs(StageArgs):
    """Merge the shards of a stage output (<stem>.shard-<i>-of-<n>.jsonl) into --out, in shard order."""
    out: str = field(default=None, metadata={"help": "the unsharded output file to write, e.g. "
                                                     "runs/rollouts/mathvista.jsonl (shards are found beside it)"})


def main(argv=None) -> None:
    cfg = parse_args(MergeArgs, argv)
    if not cfg.out:
        raise SystemExit("--out is required")
    out = cfg.resolve(cfg.out)
    lock_output(out)
    shards = find_shards(out)
    n = merge(out, shards)
    print(f"merged {len(shards)} shards into {out}: {n} records")


if __name__ == "__main__":
    main()
