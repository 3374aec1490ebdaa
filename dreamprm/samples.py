"""From the pipeline's record files to PRM `Sample`s: training nodes, meta records, BoN candidates.

One place decides how a record becomes the question, the step prefixes and the image the PRM sees, so
training (lower and upper level) and best-of-N scoring cannot drift apart.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .domains import canonical
from .io import BadRecord, DataError, ImageCheck, Skips, number, read_records, text, where
from .prm import Sample
from .steps import find_steps

TRAIN_FIELDS = ("input", "add", "image_path", "dataset", "accuracy")
META_FIELDS = ("true_false", "input", "image_path")
NO_STEP_RULES = ("whole", "skip")


def image_path(record: dict, root: Path) -> Path | None:
    p = record.get("image_path")
    if not p:
        return None
    p = Path(p)
    return p if p.is_absolute() else root / p


def response_sample(question: str, response: str, image) -> Sample | None:
    """A candidate response as a sample with one prefix per step; None when it has no steps."""
    steps = find_steps(response)
    if not steps:
        return None
    return Sample(image, question, [response[: s.end] for s in steps])


def label(value) -> float:
    """A right/wrong label as 1.0 / 0.0: a JSON bool, 0/1 or "true"/"false" (hand-written files)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return float(value.strip().lower() in ("true", "1"))
    raise BadRecord("bad label", f"true_false must be true or false, got {value!r}")


def as_label(value, at: str) -> float:
    """`label`, with a bad value a DataError naming `at`."""
    try:
        return label(value)
    except BadRecord as e:
        raise DataError(f"{at}: {e.detail}") from None


def check_policy(r: dict) -> None:
    """The fields every reader of policy records relies on (a `read_records` check)."""
    label(r["true_false"])
    text(r, "input")
    text(r, "response", allow_none=True)  # a failed generation; counted later as "no final answer"
    if not isinstance(r["id"], (str, int)) or isinstance(r["id"], bool):
        raise BadRecord("wrong type", f"id must be a string or an integer, got {r['id']!r}")


def policy_responses(records: list[dict], at: str = "responses", skips: Skips | None = None):
    """(record number, record, true_false as a bool) for each policy record, in order. A response (id, sample)
    that appears twice is skipped and counted as "duplicate response" (with `skips`) or a DataError."""
    seen: dict = {}
    for i, r in enumerate(records, 1):
        loc = where(r, f"{at}: record {i}")
        key = (r["id"], r.get("sample", 0))
        if key in seen:
            detail = f"response (id={key[0]!r}, sample={key[1]}) appears twice, first at {seen[key]}"
            if skips is None:
                raise DataError(f"{loc}: {detail}")
            skips.add("duplicate response", loc, detail)
            continue
        seen[key] = loc
        yield i, r, bool(as_label(r["true_false"], loc))


def _image_problem(images) -> Callable:
    """`images`: an `io.ImageCheck` (e.g. a stage's `cfg.images`), a callable path -> BadRecord | None, or None
    (a fresh ImageCheck). Every image is validated when its first record is read, so a bad one skips its
    records here instead of failing the batch that meets it hours into a run."""
    images = ImageCheck() if images is None else images
    return images.problem if hasattr(images, "problem") else images


def _checked_image(r: dict, root: Path, problem: Callable) -> Path | None:
    text(r, "image_path", allow_none=True)
    img = image_path(r, root)
    if img is not None and (bad := problem(img)) is not None:
        raise bad
    return img


def _check_id(r: dict) -> None:
    """`id` and `sample` group the nodes of one response: hashable scalars, when present."""
    for key in ("id", "sample"):
        v = r.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int))):
            raise BadRecord("wrong type", f"{key} must be a string or an integer, got {v!r}")


def check_counts(r: dict, acc: float) -> None:
    """MC's counts: whole numbers, 0 <= score <= times, times >= 1, and accuracy their ratio."""
    score, times = number(r, "score", 0, integer=True), number(r, "times", 1, integer=True)
    if score > times:  # e.g. score 5 of 4 rollouts would become accuracy 1.25
        raise BadRecord("inconsistent numbers", f"score {score} > times {times}")
    if abs(acc - score / times) > 1e-3:  # a hand-made file may round accuracy; a real mismatch is >= 1/times
        raise BadRecord("inconsistent numbers", f"accuracy {acc!r} is not score / times = {score} / {times}")


def check_train(r: dict) -> float:
    """The fields of a train record the lower level relies on (a `read_records` check); its accuracy."""
    for key in ("input", "add", "dataset"):
        text(r, key)
    _check_id(r)
    acc = number(r, "accuracy", 0, 1)
    if r.get("score") is not None and r.get("times") is not None:
        check_counts(r, acc)
    if not r["add"].strip():
        raise BadRecord("empty step prefix", "add holds no text")
    return acc


@dataclass
class TrainData:
    samples: list[Sample]  # paper: one prefix each; stepwise: all nodes of one response
    labels: list[list[float]]  # MC accuracy per prefix
    domains: list[str]  # domain of each sample
    skipped: dict  # kind -> records skipped (the counts of `skips`)
    ids: list = field(default_factory=list)  # question id of each sample (the records' `id`)
    skips: Skips | None = None  # the skipped records, with their first locations
    lost_domains: dict = field(default_factory=dict)  # domain -> records read, for domains left with no sample
    domain_where: dict = field(default_factory=dict)  # domain -> file:line of its first usable record
    # instance id of each sample (instance-level reweighting): the record's `instance` if it has one, else
    # the file:line of the sample's first record
    instances: list = field(default_factory=list)


def load_train(path: Path, root: Path, fmt: str, prefix_end: str = "stripped", images=None,
               skips: Skips | None = None) -> TrainData:
    """Train records -> samples. A bad record (malformed, missing or mistyped field, accuracy not a finite number
    in [0, 1] or not score / times, empty step prefix, missing or unreadable image: see `check_train` and
    `_image_problem`) is skipped and counted in `skips` (by default a new `Skips`, in `.skips`).

    Stepwise groups the nodes of one response (same id, sample, question and image) into one sample when their
    prefixes nest as the PRM will see them (`prefix_end`); nodes that do not nest are scored apart."""
    problem = _image_problem(images)
    skips = Skips(f"train {path}") if skips is None else skips
    offered: Counter = Counter()  # records read per domain, good or bad: a domain can lose all of them

    def check(r):
        offered[canonical(text(r, "dataset"))] += 1
        check_train(r)
        _checked_image(r, root, problem)

    records = read_records(path, required=TRAIN_FIELDS, check=check, skips=skips)
    groups: dict = defaultdict(list)
    domain_where: dict = {}
    seen = (lambda t: t.strip()) if prefix_end == "stripped" else (lambda t: t)
    for i, r in enumerate(records):
        img = image_path(r, root)
        qid = r["id"] if r.get("id") is not None else i
        key = (qid, r.get("sample", 0), r["input"], str(img)) if fmt == "stepwise" else i
        domain = canonical(r["dataset"])
        domain_where.setdefault(domain, where(r))
        instance = str(r["instance"]) if r.get("instance") is not None else where(r)
        groups[key].append((r["add"], float(r["accuracy"]), domain, img, qid, instance))
    samples, labels, domains, ids, instances = [], [], [], [], []
    for key, nodes in groups.items():
        nodes.sort(key=lambda n: len(seen(n[0])))
        question = key[2] if fmt == "stepwise" else records[key]["input"]
        longest = seen(nodes[-1][0])
        nested = all(longest.startswith(seen(n[0])) for n in nodes)
        parts = [nodes] if nested else [[n] for n in nodes]  # inconsistent data: score nodes apart
        for part in parts:
            samples.append(Sample(part[0][3], question, [n[0] for n in part]))
            labels.append([n[1] for n in part])
            domains.append(part[0][2])
            ids.append(part[0][4])
            instances.append(part[0][5])
    if not samples:
        raise DataError(f"{path}: no usable train record ({skips.line()})")
    lost = {d: n for d, n in sorted(offered.items()) if d not in domain_where}
    return TrainData(samples, labels, domains, dict(skips.counts), ids, skips, lost, domain_where, instances)


@dataclass
class MetaData:
    samples: list[Sample]
    labels: list[float]
    skipped: dict
    without_steps: int  # records handled by the no-step rule
    # label ("true"/"false") -> {"with steps": n, "without steps": n}, over every record read (before the rule)
    steps_by_label: dict = field(default_factory=dict)
    path: str = ""
    skips: Skips | None = None  # bad records skipped, with their first locations
    dropped: Skips | None = None  # records without step text that the rule dropped

    def table(self) -> str:
        rows = [f"  {'label':<7}{'with steps':>12}{'without steps':>15}"]
        for label in ("true", "false"):
            c = self.steps_by_label.get(label, {})
            rows.append(f"  {label:<7}{c.get('with steps', 0):>12}{c.get('without steps', 0):>15}")
        return "\n".join(rows)

    def warning(self) -> str | None:
        """Plain words when one label never comes with step text: the upper level can then tell right from wrong
        by the presence of steps alone (the authors' released meta.json: every false record is a bare question)."""
        c = self.steps_by_label
        total = {k: v.get("with steps", 0) + v.get("without steps", 0) for k, v in c.items()}
        bare = [k for k in ("true", "false") if total.get(k) and not c[k].get("with steps")]
        if not bare:
            return None
        other = "false" if bare[0] == "true" else "true"
        has = c.get(other, {}).get("with steps", 0)
        return (f"{self.path}: every {bare[0]} record ({total[bare[0]]}) is a bare question without step text"
                + (f", while {has} {other} records have steps" if has else "")
                + ": the upper level can learn 'no steps = " + ("right" if bare[0] == "true" else "wrong")
                + "' instead of judging the reasoning, and the domain weights follow that. Make a meta set whose "
                "right and wrong records both hold responses: python inference/mmmu_pro.py --path . && "
                "python inference/meta_data.py --path . (scripts/04_meta_data.sh), or pass "
                "--meta_without_steps skip.")


def meta_sample(record: dict, image, rule: str = "whole", steps: list | None = None) -> Sample | None:
    """A meta record (question followed by the whole response) as a sample.

    The question is the text before Step 1 and the prefixes run from Step 1 to the end of each step, so
    `question + "\\n\\n" + prefix` is the record's text up to that step, as in training. A record with no
    step text (372 of the 500 released ones) is, by rule `whole`, one step whose text is the whole input:
    the PRM scores it as it stands; rule `skip` drops it. `steps`: `find_steps` of the input, if known.
    """
    text = str(record["input"])
    steps = find_steps(text) if steps is None else steps
    if not steps:
        return Sample(image, text.rstrip(), [""]) if rule == "whole" else None
    start = steps[0].start
    return Sample(image, text[:start].rstrip(), [text[start: s.end] for s in steps])


def check_meta(r: dict) -> float:
    """The fields of a meta record the upper level relies on (a `read_records` check); its label."""
    y = label(r["true_false"])
    if not text(r, "input").strip():
        raise BadRecord("empty input", "input holds no text")
    _check_id(r)
    return y


def load_meta(path: Path, root: Path, rule: str = "whole", images=None, skips: Skips | None = None) -> MetaData:
    """Meta records -> samples. A bad record (malformed, bad label, missing or mistyped field, empty input,
    missing or unreadable image) is skipped and counted in `skips` (by default a new `Skips`, in `.skips`).
    Records without step text follow `rule` (see `meta_sample`); those it drops are counted in `.dropped`,
    apart from the bad records: they are the rule's choice, not a fault, and no ceiling applies to them."""
    if rule not in NO_STEP_RULES:
        raise ValueError(f"meta rule must be one of {NO_STEP_RULES}; got {rule!r}")
    problem = _image_problem(images)
    skips = Skips(f"meta {path}") if skips is None else skips

    def check(r):
        check_meta(r)
        _checked_image(r, root, problem)

    records = read_records(path, required=META_FIELDS, check=check, skips=skips)
    dropped = Skips(f"meta {path} (--meta_without_steps {rule})")
    dropped.seen = len(records)
    samples, labels, without = [], [], 0
    split: dict = {"true": Counter(), "false": Counter()}
    for r in records:
        y = label(r["true_false"])
        steps = find_steps(r["input"])
        split["true" if y else "false"]["with steps" if steps else "without steps"] += 1
        s = meta_sample(r, image_path(r, root), rule, steps)
        if s is None:
            dropped.add("no steps", where(r), "no step text, dropped by the rule")
            continue
        without += not steps
        samples.append(s)
        labels.append(y)
    if not samples:
        raise DataError(f"{path}: no usable meta record ({skips.line()}; {dropped.line()})")
    skipped = dict(skips.counts + dropped.counts)
    return MetaData(samples, labels, skipped, without, {k: dict(v) for k, v in split.items()}, str(path),
                    skips, dropped)
