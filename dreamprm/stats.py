"""Uncertainty of a comparison between two systems on the same units: the paired bootstrap.

    ci = paired_bootstrap(a, b, scale=100)   # a, b: 1/0 correctness of systems A and B on the same questions
    ci["diff"], ci["lo"], ci["hi"]           # A - B in percentage points and its 95% interval
    holds(ci)                                # "A is better than B" only when the interval excludes 0

The units (questions, solutions) are resampled with replacement, the SAME indices for both systems, so what the
two systems have in common (a question both get right, or both wrong) cancels: the interval is that of the
paired difference. It is the plain percentile interval (the 2.5 and 97.5 percentiles of the resampled
differences), not BCa: with few units (tens) it is rough and tends to be too narrow, and on 0/1 data it moves in
steps of 1/n. It covers the sampling of the units only: a second training seed is not a resample of questions,
so the spread over seeds is reported beside it, never folded in.

Pooled over benchmarks (or seeds): concatenate the units (`pooled`), every question one unit, so a larger
benchmark weighs more, as in an accuracy over all questions.

`bon_correctness` / `paired_bon` read the per-question correctness of BoN runs from the files BoN/pick.py writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

CHUNK = 4_000_000  # index-matrix elements drawn at once (32 MB of int64): large n_boot * n never fills memory


def _indices(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's resamples, (rows, n) index matrices in chunks; one seed gives one sequence of them."""
    rng = np.random.default_rng(seed)
    rows = max(1, CHUNK // n)
    for start in range(0, n_boot, rows):
        yield rng.integers(0, n, size=(min(rows, n_boot - start), n))


def _interval(diff: float, diffs: np.ndarray, n: int, n_boot: int, level: float, scale: float) -> dict:
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(diffs, [tail, 100 - tail]) if np.isfinite(diffs).any() else (np.nan, np.nan)
    return {"diff": float(scale * diff), "lo": float(scale * lo), "hi": float(scale * hi), "n": n,
            "n_boot": n_boot, "level": level}


def _units(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"a paired comparison needs the same, non-zero number of units; got {len(a)} and {len(b)}")
    return a, b


def paired_bootstrap(a, b, n_boot: int = 10000, seed: int = 0, stat: Callable = np.mean, scale: float = 1.0,
                     level: float = 0.95) -> dict:
    """stat(a) - stat(b) and its percentile interval over `n_boot` paired resamples of the units.

    `stat` is a numpy reduction taking `axis=` (np.mean, np.median, ...). `scale=100` turns 0/1 correctness
    into percentage points. Returns {"diff", "lo", "hi", "n", "n_boot", "level"}."""
    a, b = _units(a, b)
    diff = stat(a) - stat(b)
    diffs = np.concatenate([stat(a[idx], axis=1) - stat(b[idx], axis=1)
                            for idx in _indices(len(a), n_boot, seed)])
    return _interval(diff, diffs, len(a), n_boot, level, scale)


def paired_bootstrap_metric(n_units: int, metric_a: Callable, metric_b: Callable, n_boot: int = 10000,
                            seed: int = 0, scale: float = 1.0, level: float = 0.95) -> dict:
    """The same for metrics that are not a mean over units, e.g. macro-F1 over all steps of the solutions:
    metric_x(indices) computes system x's metric on the units at `indices` (repeats included; all units:
    np.arange(n_units)). A resample on which a metric is undefined (NaN) is left out of the interval and
    counted in "undefined". The same seed draws the same resamples as `paired_bootstrap`."""
    if n_units < 1:
        raise ValueError("a paired comparison needs at least one unit")
    every = np.arange(n_units)
    diff = metric_a(every) - metric_b(every)
    diffs = np.array([metric_a(row) - metric_b(row) for idx in _indices(n_units, n_boot, seed) for row in idx],
                     dtype=float)
    out = _interval(diff, diffs, n_units, n_boot, level, scale)
    out["undefined"] = int(np.isnan(diffs).sum())
    return out


def holds(ci: dict) -> bool:
    """The claim "A better than B" holds only when the whole interval is above 0."""
    return bool(ci.get("lo") is not None and ci["lo"] > 0)


def pooled(pairs) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) pairs of several benchmarks (or seeds) -> one (a, b): the units concatenated, each one unit."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("nothing to pool")
    return (np.concatenate([np.asarray(a, dtype=float).ravel() for a, _ in pairs]),
            np.concatenate([np.asarray(b, dtype=float).ravel() for _, b in pairs]))


def fmt_ci(ci: dict, digits: int = 1) -> str:
    """'+3.3 [-1.7, +8.3]' (the difference and its interval)."""
    return f"{ci['diff']:+.{digits}f} [{ci['lo']:+.{digits}f}, {ci['hi']:+.{digits}f}]"


# --- per-question correctness of BoN runs (BoN/pick.py's files) ----------------------------------------------

def bon_correctness(run: Path, bench: str, method: str | None = None, candidates: Path | None = None) -> dict:
    """id -> 1.0 / 0.0: whether the candidate BoN run `run` (runs/bon/<name>) selected for each question of
    `bench` is correct, at the run's largest N.

    <bench>.selected.jsonl holds one record per question with candidates: the main method's pick (`method`,
    e.g. prm:mean_log_odds; orm for an ORM run) with its `true_false`, and the other picks (`picks`: orm,
    orm_proxy, self_consistency) as sample indices only. `method=None` or the record's own method reads
    `true_false`; a side pick needs `candidates` (the benchmark's candidate file) for the picked sample's
    `true_false`. Questions without candidates have no record (results.json counts them wrong): `paired_bon`
    adds them."""
    from .io import DataError, read_records

    recs = read_records(Path(run) / f"{bench}.selected.jsonl", required=("id", "method", "true_false"))
    side = [r for r in recs if method is not None and r["method"] != method]
    right = candidate_labels(candidates) if side else {}
    out = {}
    for r in recs:
        if method is None or r["method"] == method:
            out[r["id"]] = float(bool(r["true_false"]))
            continue
        s = (r.get("picks") or {}).get(method)
        if s is None or (r["id"], s) not in right:
            why = "" if s is None else f" (sample {s} not in {candidates})"
            raise DataError(f"{r.where}: no {method!r} pick{why}")
        out[r["id"]] = right[(r["id"], s)]
    return out


def candidate_labels(path: Path | None) -> dict:
    """(id, sample) -> 1.0 / 0.0 from a candidate file (a record without `sample`: its position in its
    question, as BoN/pick.py counts it)."""
    from .io import DataError, read_records
    from .samples import as_label

    if path is None:
        raise DataError("a side pick's correctness needs the benchmark's candidate file")
    out, seen = {}, {}
    for r in read_records(path, required=("id", "true_false")):
        s = r.get("sample")
        s = seen.get(r["id"], 0) if s is None else int(s)
        seen[r["id"]] = seen.get(r["id"], 0) + 1
        out.setdefault((r["id"], s), as_label(r["true_false"], r.where))  # a repeated pair: the first counts
    return out


def random_correctness(path: Path, n: int) -> dict:
    """id -> the expected correctness of a uniform pick among a question's first n candidates (lowest sample
    indices), BoN/pick.py's `random`."""
    by_q: dict = {}
    for (qid, s), v in candidate_labels(path).items():
        by_q.setdefault(qid, []).append((s, v))
    return {q: float(np.mean([v for _, v in sorted(c)[:n]])) for q, c in by_q.items()}


def paired_bon(a: dict, b: dict, total: int | None = None, where: str = "") -> tuple[np.ndarray, np.ndarray, list]:
    """Two systems' per-question correctness (id -> value) on the same questions -> aligned arrays and ids.

    Both must cover the same ids (they come from one candidate file); questions without candidates (`total`,
    results.json's count, minus the records) are added as wrong for both, so the arrays' means are the
    accuracies results.json reports."""
    from .io import DataError

    if set(a) != set(b):
        only = len(set(a) - set(b)), len(set(b) - set(a))
        raise DataError(f"{where}: the two runs selected on different questions ({only[0]} only in the first, "
                        f"{only[1]} only in the second): not a paired comparison")
    ids = list(a)
    pad = 0 if total is None else total - len(ids)
    if pad < 0:
        raise DataError(f"{where}: {len(ids)} selected questions but a total of {total}")
    return (np.array([a[i] for i in ids] + [0.0] * pad), np.array([b[i] for i in ids] + [0.0] * pad),
            ids + [None] * pad)
