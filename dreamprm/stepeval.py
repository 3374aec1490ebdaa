"""Step-level evaluation of a PRM on a labelled step set (VisualProcessBench, or the mini world's step set).

A step set is JSONL, one solution per line (`dataset/sources/visualprocessbench.py` writes one):

    {"id", "input", "ground_truth", "image_path", "dataset", "steps": [text, ...],
     "labels": [1 | 0 | -1, ...] (correct / neutral / incorrect, one per step), "policy_model"}

`BoN/step_eval.py` scores every step with the PRM through the scorer best-of-N uses (`TreeScorer`), one line
per solution in runs/stepeval/<name>/<set>.scores.jsonl (resumable), then computes the metrics below into
<set>.metrics.json and prints them beside the published VisualProcessBench numbers.

Metrics (pure functions on lists; `report` puts them together per source dataset and overall):
- neutral rule (`NEUTRAL_RULES`, default `drop`): a neutral step (label 0) is left out of step F1 and AUROC,
  and is no error for first-error identification; `correct` / `incorrect` count it as that label everywhere.
  VisualPRM's own evaluation counts TP/TN/FP/FN only over steps labelled 1 or -1, i.e. `drop`.
- `step_f1`: a step is predicted correct when its score >= threshold; F1 of the class "correct", of the class
  "incorrect", and their mean (macro-F1, VisualProcessBench's metric), in percent, over all steps pooled.
- `heldout_threshold`: the solutions are split in two halves by a seeded hash of the id; the threshold with the
  best macro-F1 on one half is reported on the other, both ways, and the two held-out macro-F1s averaged.
- `first_error` (ProcessBench style): predicted first error = the earliest step scored below the threshold,
  true first error = the earliest step labelled -1; accuracy on erroneous solutions (same index), on fully
  correct ones (no step below the threshold), and their harmonic mean.
- `auroc`: correct (1) against incorrect (-1) steps; ties count one half.
"""
from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import shards
from .cli import StageArgs
from .io import (AppendWriter, BadRecord, DataError, Skips, lock_output, number, read_records, text, where,
                 write_json)
from .steps import find_steps

NEUTRAL_RULES = ("drop", "correct", "incorrect")
LABELS = (1, 0, -1)
# Overall macro-F1 (%) on VisualProcessBench, VisualPRM paper (arXiv 2503.10291), as issue 13 quotes them (not
# re-checked against the paper's table here): printed beside this run's.
PUBLISHED = {"VisualPRM-8B": 62.0, "GPT-4o": 60.3, "Gemini-2.0-Flash": 62.3, "Random guessing": 50.0}
RANDOM = "random"  # --prm random: the seeded uniform baseline


# --- the step set ---------------------------------------------------------------------------------------

@dataclass
class StepItem:
    id: object
    dataset: str
    question: str
    image: Path | None
    steps: list[str]
    labels: list[int]
    policy_model: str | None = None
    n_images: int = 1  # images the source gave; the PRM sees the first (image_path)
    where: str = "?"


def check_step_record(r: dict) -> None:
    """The fields of a step-set record (a read_records check)."""
    if isinstance(r["id"], bool) or not isinstance(r["id"], (str, int)):
        raise BadRecord("wrong type", f"id must be a string or an integer, got {r['id']!r}")
    text(r, "input")
    for key in ("image_path", "dataset", "policy_model"):
        text(r, key, allow_none=True)
    steps, labels = r["steps"], r["labels"]
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise BadRecord("wrong type", f"steps must be a list of strings, got {str(steps)[:60]}")
    if not steps:
        raise BadRecord("no steps", "steps is empty")
    if not isinstance(labels, list) or any(isinstance(y, bool) or y not in LABELS for y in labels):
        raise BadRecord("bad label", f"labels must be 1, 0 or -1, got {str(labels)[:60]}")
    if len(labels) != len(steps):
        raise BadRecord("inconsistent numbers", f"{len(steps)} steps but {len(labels)} labels")


def read_step_set(path: str | Path, root: str | Path, skips: Skips | None = None,
                  image_problem: Callable | None = None) -> list[StepItem]:
    """Step-set records -> StepItems, in file order. A bad record (`check_step_record`; with `image_problem`, a
    function path -> BadRecord | None such as cfg.image_problem, also its image) or a repeated id is counted
    in `skips`, or is a DataError naming file:line without. A relative image_path resolves against `root`."""
    path, root = Path(path), Path(root)

    def check(r):
        check_step_record(r)
        if image_problem is not None and r.get("image_path") and (bad := image_problem(_image(r, root))):
            raise bad

    items, seen = [], {}
    for r in read_records(path, required=("id", "input", "steps", "labels"), check=check, skips=skips):
        if r["id"] in seen:
            detail = f"id {r['id']!r} is also at {seen[r['id']]}"
            if skips is None:
                raise DataError(f"{where(r)}: {detail}")
            skips.add("duplicate id", where(r), detail)
            continue
        seen[r["id"]] = where(r)
        items.append(StepItem(r["id"], r.get("dataset") or path.stem, r["input"], _image(r, root), list(r["steps"]),
                              [int(y) for y in r["labels"]], r.get("policy_model"),
                              len(r.get("image_paths") or [1]), where(r)))
    return items


def _image(r: dict, root: Path) -> Path | None:
    p = r.get("image_path")
    return None if not p else (Path(p) if Path(p).is_absolute() else root / p)


def step_texts(steps: list[str]) -> list[str]:
    """Each step as the PRM reads it: a step that already opens with its own `Step k` header is kept,
    any other gets `Step k: ` in front (the header `dreamprm.steps.find_steps` looks for)."""
    out = []
    for k, s in enumerate(steps, 1):
        s = s.strip()
        head = find_steps(s)
        out.append(s if head and head[0].number == k and head[0].start == 0 else f"Step {k}: {s}")
    return out


def step_sample(item: StepItem):
    """The PRM sample of a solution: question = `input`, prefix k = steps 1..k joined by blank lines, i.e. the
    response `"\\n\\n".join(step_texts(steps))` up to the end of step k, one prefix (one score) per labelled step.
    That is where `find_steps` cuts the response unless a step's own text holds a `Step n` header line or a
    `Final answer:` marker (`splits_differently`); the labelled boundaries win then."""
    from .prm import Sample

    texts = step_texts(item.steps)
    return Sample(None if item.image is None else str(item.image), item.question,
                  ["\n\n".join(texts[:k]) for k in range(1, len(texts) + 1)])


def splits_differently(item: StepItem) -> bool:
    return len(find_steps("\n\n".join(step_texts(item.steps)))) != len(item.steps)


# --- metrics --------------------------------------------------------------------------------------------

def _flat(xs) -> list:
    """Per-solution lists pooled into one list of steps (a flat list passes through)."""
    return [x for s in xs for x in s] if xs and isinstance(xs[0], (list, tuple)) else list(xs)


def apply_neutral(labels: list[int], rule: str = "drop") -> list[int]:
    """Labels under a neutral rule: `drop` keeps 0 (left out by the metrics), `correct` / `incorrect` map it."""
    if rule not in NEUTRAL_RULES:
        raise ValueError(f"neutral rule must be one of {', '.join(NEUTRAL_RULES)}, got {rule!r}")
    to = {"drop": 0, "correct": 1, "incorrect": -1}[rule]
    return [to if y == 0 else y for y in labels]


def _f1(tp: int, fp: int, fn: int) -> float | None:
    d = 2 * tp + fp + fn
    return 100.0 * 2 * tp / d if d else None  # no step of the class and none predicted: undefined


def _f1s(tp: int, fp: int, fn: int, tn: int) -> dict:
    fc, fi = _f1(tp, fp, fn), _f1(tn, fn, fp)  # incorrect as the positive class: its TP is our TN
    return {"f1_correct": fc, "f1_incorrect": fi,
            "macro_f1": None if fc is None or fi is None else (fc + fi) / 2}


def step_f1(scores, labels, threshold: float = 0.5) -> dict:
    """F1 of "correct" (score >= threshold) and of "incorrect", and their mean, in percent, over every step
    labelled 1 or -1 (0 is left out). `scores` and `labels`: per-solution lists, or flat lists of steps."""
    tp = fp = fn = tn = 0
    for s, y in zip(_flat(scores), _flat(labels)):
        if y == 0:
            continue
        ok = s >= threshold
        tp += ok and y == 1
        fn += (not ok) and y == 1
        fp += ok and y == -1
        tn += (not ok) and y == -1
    return _f1s(tp, fp, fn, tn)


def _sweep(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct threshold that changes a prediction (the distinct scores, and one above them all: every
    step incorrect) with the macro-F1 at each; in ascending order."""
    s = np.asarray(_flat(scores), dtype=float)
    y = np.asarray(_flat(labels))
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == -1])
    t = np.unique(s[y != 0])
    t = np.append(t, np.nextafter(t[-1] if len(t) else 1.0, np.inf))
    tp = len(pos) - np.searchsorted(pos, t, "left")  # correct steps scored >= t
    fp = len(neg) - np.searchsorted(neg, t, "left")
    fn, tn = len(pos) - tp, len(neg) - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        fc = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        fi = np.where(2 * tn + fn + fp > 0, 2 * tn / (2 * tn + fn + fp), np.nan)
    return t, 100 * (fc + fi) / 2


def best_threshold(scores, labels) -> tuple[float, float | None]:
    """(threshold, macro-F1) with the highest macro-F1; ties go to the lowest threshold."""
    t, macro = _sweep(scores, labels)
    if not np.isfinite(macro).any():
        return 0.5, None
    i = int(np.nanargmax(macro))  # the first maximum = the lowest threshold
    return float(t[i]), float(macro[i])


def half_of(item_id, seed: int = 0) -> int:
    """0 or 1: the half a solution falls in, from a seeded hash of its id (stable across runs and machines)."""
    return hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[0] & 1


def heldout_threshold(ids: list, scores: list, labels: list, seed: int = 0) -> dict:
    """The threshold chosen on one half of the solutions, its macro-F1 on the other half, both ways; `macro_f1`
    is the mean of the two held-out macro-F1s, `threshold` the mean of the two chosen thresholds."""
    halves = [[i for i, x in enumerate(ids) if half_of(x, seed) == h] for h in (0, 1)]
    out = {"seed": seed, "split": "sha256(seed:id), first byte's lowest bit", "halves": []}
    for fit, test in ((0, 1), (1, 0)):
        a, b = halves[fit], halves[test]
        t, fit_f1 = best_threshold([scores[i] for i in a], [labels[i] for i in a])
        on_b = step_f1([scores[i] for i in b], [labels[i] for i in b], t)
        out["halves"].append({"chosen_on": "AB"[fit], "n_chosen_on": len(a), "threshold": t, "fit_macro_f1": fit_f1,
                              "reported_on": "AB"[test], "n_reported_on": len(b), **on_b})
    m = [h["macro_f1"] for h in out["halves"]]
    out["macro_f1"] = None if None in m else sum(m) / 2
    out["threshold"] = sum(h["threshold"] for h in out["halves"]) / 2
    return out


def first_error(scores: list, labels: list, threshold: float = 0.5) -> dict:
    """ProcessBench-style first-error identification over solutions (per-solution lists), in percent.
    Predicted: the index of the earliest step scored below `threshold`, None if none is. True: the index of the
    earliest step labelled -1, None for a fully correct solution (0 is no error)."""
    hit_err = n_err = hit_ok = n_ok = 0
    for s, y in zip(scores, labels):
        pred = next((k for k, x in enumerate(s) if x < threshold), None)
        true = next((k for k, v in enumerate(y) if v == -1), None)
        if true is None:
            n_ok += 1
            hit_ok += pred is None
        else:
            n_err += 1
            hit_err += pred == true
    acc_err = 100.0 * hit_err / n_err if n_err else None
    acc_ok = 100.0 * hit_ok / n_ok if n_ok else None
    hm = None
    if acc_err is not None and acc_ok is not None:
        hm = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok else 0.0
    return {"acc_erroneous": acc_err, "acc_correct": acc_ok, "f1": hm, "n_erroneous": n_err, "n_correct": n_ok}


def auroc(scores, labels) -> float | None:
    """Area under the ROC curve (in [0, 1]) of the scores separating steps labelled 1 from steps labelled -1:
    the chance that a correct step outscores an incorrect one, ties one half. None without both kinds."""
    s = np.asarray(_flat(scores), dtype=float)
    y = np.asarray(_flat(labels))
    pos, neg = s[y == 1], np.sort(s[y == -1])
    if not len(pos) or not len(neg):
        return None
    below = np.searchsorted(neg, pos, "left")
    ties = np.searchsorted(neg, pos, "right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (len(pos) * len(neg)))


def _group(scores: list, labels: list, threshold: float) -> dict:
    flat = Counter(_flat(labels))
    return {**step_f1(scores, labels, threshold), "auroc": auroc(scores, labels),
            "first_error": first_error(scores, labels, threshold), "n_solutions": len(scores),
            "n_steps": {"correct": flat[1], "incorrect": flat[-1], "neutral": flat[0]}}


def report(items: list[StepItem], scores, threshold: float = 0.5, neutral: str = "drop", seed: int = 0) -> dict:
    """Every metric per source dataset and overall. `scores`: id -> [one score per step], or a list aligned
    with `items`; an item without scores, or with another number of scores than steps, is left out (counted)."""
    by_id = scores if isinstance(scores, dict) else {it.id: s for it, s in zip(items, scores)}
    used, missing, mismatched = [], 0, 0
    for it in items:
        s = by_id.get(it.id)
        if s is None:
            missing += 1
        elif len(s) != len(it.steps):
            mismatched += 1
        else:
            used.append((it, list(s), apply_neutral(it.labels, neutral)))
    if not used:
        raise DataError("no solution has scores for its steps: nothing to evaluate")
    raw = Counter(y for it, _, _ in used for y in it.labels)
    names = sorted({it.dataset for it, _, _ in used})
    out = {"threshold": threshold, "neutral": neutral,
           "overall": _group([s for _, s, _ in used], [y for _, _, y in used], threshold),
           "by_dataset": {n: _group([s for it, s, _ in used if it.dataset == n],
                                    [y for it, _, y in used if it.dataset == n], threshold) for n in names},
           "n_solutions": len(used),
           "n_steps": {"correct": raw[1], "incorrect": raw[-1], "neutral": raw[0]},  # as labelled, before the rule
           "threshold_heldout": heldout_threshold([it.id for it, _, _ in used], [s for _, s, _ in used],
                                                  [y for _, _, y in used], seed),
           "left_out": {"without scores": missing, "scores not one per step": mismatched},
           "multi_image_solutions": sum(it.n_images > 1 for it, _, _ in used)}
    return out


# --- scoring --------------------------------------------------------------------------------------------

def random_scores(item_id, n_steps: int, seed: int = 0) -> list[float]:
    """The random baseline: uniform in [0, 1) per step, seeded by (seed, id, step), so any subset, order or
    resume gives the same numbers."""
    return [random.Random(f"{seed}:{item_id}:{k}").random() for k in range(n_steps)]


def prm_scorer(prm) -> Callable[[list[StepItem]], list[list[float]]]:
    """Items -> one score per step each, through best-of-N's scorer (`bon.fast_scorer`, either PRM kind)."""
    from .bon import fast_scorer

    fast = fast_scorer(prm)

    def score(items):
        samples = [step_sample(it) for it in items]
        flat = fast(samples).float().cpu().tolist()
        out, k = [], 0
        for s in samples:
            out.append(flat[k:k + len(s.prefixes)])
            k += len(s.prefixes)
        return out
    return score


def score_items(items: list[StepItem], scorer: Callable, writer: AppendWriter, batch_size: int, meta: dict,
                desc: str = "step scoring", progress: bool = True) -> int:
    """Score every item not yet in `writer` and append {id, dataset, **meta, scores} per item, as
    `bon.score_questions` does for candidates: longest first (a GPU runs out of memory at once, not after
    hours), `batch_size` solutions per call, every score checked, each batch written as soon as it is scored.
    Returns the number of items scored."""
    from tqdm.auto import tqdm

    from .prm import check_probabilities  # here: reading and evaluating step scores needs no torch

    todo = [it for it in items if not writer.done(it.id)]
    todo.sort(key=lambda it: -(len(it.question) + sum(len(s) for s in it.steps)))
    with tqdm(total=len(todo), desc=desc, unit="solution", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            for it, s in zip(batch, scorer(batch)):
                if len(s) != len(it.steps):
                    raise DataError(f"{it.where}: {len(s)} scores for {len(it.steps)} steps of {it.id!r}")
                check_probabilities(s, it.where, f" of solution {it.id!r}",
                                    "try --precision fp32, then --resume (the solutions written so far are kept)")
                writer.write({"id": it.id, "dataset": it.dataset, **meta, "scores": s})
            bar.update(len(batch))
    return len(todo)


def check_scores_record(r: dict) -> None:
    """A step-scores record (a read_records check): every score a finite number in [0, 1]."""
    if isinstance(r["id"], bool) or not isinstance(r["id"], (str, int)):
        raise BadRecord("wrong type", f"id must be a string or an integer, got {r['id']!r}")
    if not isinstance(r["scores"], list):
        raise BadRecord("wrong type", f"scores must be a list, got {str(r['scores'])[:60]}")
    for j, x in enumerate(r["scores"], 1):
        number({f"step {j}": x}, f"step {j}", 0, 1)


def read_step_scores(path: str | Path, skips: Skips | None = None) -> dict:
    """id -> [scores] from a scores file (a record written twice: the last one wins)."""
    return {r["id"]: r["scores"] for r in read_records(path, required=("id", "scores"), check=check_scores_record,
                                                       skips=skips)}


# --- the command ----------------------------------------------------------------------------------------

@dataclass
class StepEvalConfig(StageArgs):
    """Step-level evaluation of a PRM on a labelled step set (VisualProcessBench): every step scored, then
    macro-F1, held-out threshold, first-error accuracy and AUROC, per source dataset and overall."""
    prm: str = field(default="runs/reweighting/prm", metadata={
        "help": "trained PRM directory (relative to --path) or hub id, as BoN/score.py takes it; `random`: the "
                "seeded uniform baseline (no model)"})
    data: str = field(default="data/visualprocessbench.jsonl", metadata={
        "help": "step set: dataset/prepare.py --sources visualprocessbench writes data/visualprocessbench.jsonl"})
    name: str = field(default="dreamprm", metadata={"help": "run name: outputs in runs/stepeval/<name>/"})
    threshold: float = field(default=0.5, metadata={"help": "a step is predicted correct when its score >= this"})
    neutral: str = field(default="drop", metadata={
        "help": "neutral steps (label 0): drop = left out of step F1 and AUROC and no error for first-error "
                "(VisualPRM's evaluation); correct / incorrect = counted as that label"})
    input_format: str = field(default="auto", metadata={
        "help": "PRM input format: paper, stepwise, or auto (the one the PRM was trained with)"})
    prm_kind: str = field(default="auto", metadata={
        "help": "auto (the kind the PRM was trained as, scalar if unrecorded), scalar or generative, as BoN/score.py"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), bf16 or fp32"})
    batch_size: int = field(default=8, metadata={"help": "solutions per forward pass"})
    shard: str = shards.shard_field()

    def out_dir(self) -> Path:
        return self.resolve(self.out or f"runs/stepeval/{self.name}")


def _fmt(x, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def table(metrics: dict) -> str:
    """The printed summary: per source dataset and overall, then the held-out threshold and published numbers."""
    head = ["dataset", "solutions", "steps c/i/n", "F1 correct", "F1 incorrect", "macro-F1", "1st-err acc (err)",
            "acc (correct)", "1st-err F1", "AUROC"]
    rows = []
    for name, g in [*metrics["by_dataset"].items(), ("overall", metrics["overall"])]:
        n, fe = g["n_steps"], g["first_error"]
        rows.append([name, str(g["n_solutions"]), f"{n['correct']}/{n['incorrect']}/{n['neutral']}",
                     _fmt(g["f1_correct"]), _fmt(g["f1_incorrect"]), _fmt(g["macro_f1"]), _fmt(fe["acc_erroneous"]),
                     _fmt(fe["acc_correct"]), _fmt(fe["f1"]), _fmt(g["auroc"], ".3f")])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    def line(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    h = metrics["threshold_heldout"]
    parts = [f"threshold {metrics['threshold']:g}, neutral steps: {metrics['neutral']}", line(head),
             *map(line, rows),
             "held-out threshold (chosen on one half of the solutions, reported on the other, both ways): "
             + " / ".join(format(x["threshold"], ".3f") for x in h["halves"]) + f", macro-F1 {_fmt(h['macro_f1'])}",
             "published overall macro-F1 on VisualProcessBench (VisualPRM paper): "
             + ", ".join(f"{k} {v:.1f}" for k, v in PUBLISHED.items())
             + f"; this run {_fmt(metrics['overall']['macro_f1'])}"]
    return "\n".join(parts)


def run_step_eval(cfg: StepEvalConfig) -> dict:
    """BoN/step_eval.py: score every step of the step set (resumable), then the metrics file and the table.

    Everything checkable is checked before the PRM loads: options, --prm, the step set (bad records and images
    skipped and counted, the --max_skip_fraction ceiling), outputs that exist without --resume, a resume of
    another PRM's scores."""
    from . import bon

    if cfg.neutral not in NEUTRAL_RULES:
        raise DataError(f"--neutral must be one of {', '.join(NEUTRAL_RULES)}, got {cfg.neutral!r}")
    if not (math.isfinite(cfg.threshold) and 0 <= cfg.threshold <= 1):
        raise DataError(f"--threshold must be a number in [0, 1], got {cfg.threshold}")
    if cfg.batch_size < 1:
        raise DataError(f"--batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise DataError(f"--precision must be auto, bf16 or fp32, got {cfg.precision!r}")
    i, n = shards.spec(cfg.shard)
    out_dir = cfg.out_dir()
    data = cfg.resolve(cfg.data)
    set_name = data.name.removesuffix(".jsonl").removesuffix(".json")
    scores_path = shards.shard_path(out_dir / f"{set_name}.scores.jsonl", i, n)
    if n == 1:
        lock_output(out_dir, directory=True)  # one run per output directory
        metrics_path = cfg.output(out_dir / f"{set_name}.metrics.json", " (the metrics are recomputed from the scores)")
    else:  # shards share the directory: each locks its scores; the unsharded rerun after the merge scores nothing
        lock_output(scores_path)
    if cfg.prm == RANDOM:
        location, fmt = RANDOM, f"uniform, seed {cfg.seed}"  # another seed must not continue this file
    else:
        location = bon.prm_location(cfg)
        fmt = bon.resolve_format(cfg, location)
    skips = cfg.skips(data)
    items = read_step_set(data, cfg.resolve("."), skips, cfg.image_problem)
    skipped = {"step set": skips.report(cfg.max_skip_fraction)}
    if not items:
        raise DataError(f"{data}: no usable solution ({skips.line()})")
    position = {it.id: k for k, it in enumerate(items)}
    items = shards.select(items, i, n)
    meta = {"prm": cfg.prm, "format": fmt}
    with AppendWriter(scores_path, key=lambda r: r["id"], resume=cfg.resume) as w:
        bon.check_resume(scores_path, cfg.prm, fmt)
        resumed, todo = w.n_resumed, sum(not w.done(it.id) for it in items)
        print(f"{set_name}: {len(items)} solutions, {sum(len(it.steps) for it in items)} steps; {resumed} "
              f"solutions already in {scores_path}, {todo} to score (PRM {cfg.prm}, {fmt})")
        scored = 0
        if todo:
            if cfg.prm == RANDOM:
                scorer = lambda batch: [random_scores(it.id, len(it.steps), cfg.seed) for it in batch]  # noqa: E731
            else:
                scorer = prm_scorer(bon.load_prm(cfg, location, fmt))
            scored = score_items(items, scorer, w, cfg.batch_size, meta, f"PRM {set_name}")
    shards.finalize(scores_path, order=lambda r: (position.get(r["id"], len(position)), str(r["id"])))
    if n > 1:
        print(f"shard {cfg.shard}: wrote {scores_path}; when every shard has: python -m dreamprm.shards --out "
              f"{out_dir / (set_name + '.scores.jsonl')}, then this command without --shard for the metrics")
        return {"shard": cfg.shard, "scored in this run": scored, "resumed": resumed}
    score_skips = cfg.skips(scores_path)
    scores = read_step_scores(scores_path, score_skips)
    skipped["scores"] = score_skips.report(cfg.max_skip_fraction)
    metrics = report(items, scores, cfg.threshold, cfg.neutral, cfg.seed)
    metrics.update({"prm": cfg.prm, "prm_location": location, "format": fmt, "data": str(data), "seed": cfg.seed,
                    "published_overall_macro_f1": PUBLISHED,
                    "scoring": {"solutions": len(items), "scored in this run": scored, "resumed": resumed,
                                "steps split differently by find_steps": sum(map(splits_differently, items)),
                                "scored ids not in the step set (ignored)": sum(i not in position for i in scores)},
                    "skipped": skipped})
    write_json(metrics_path, metrics)
    print(table(metrics))
    print(f"wrote {scores_path} and {metrics_path}")
    return metrics
