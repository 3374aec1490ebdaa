"""From the pipeline's record files to PRM `Sample`s: training nodes, meta records, BoN candidates.

One place decides how a record becomes the question, the step prefixes and the image the PRM sees, so
training (lower and upper level) and best-of-N scoring cannot drift apart.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .domains import canonical
from .io import BadRecord, DataError, Skips, read_records, text, where
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


@dataclass
class TrainData:
    samples: list[Sample]  # paper: one prefix each; stepwise: all nodes of one response
    labels: list[list[float]]  # MC accuracy per prefix
    domains: list[str]  # domain of each sample
    skipped: dict
    ids: list = field(default_factory=list)  # question id of each sample (the records' `id`)


def load_train(path: Path, root: Path, fmt: str, prefix_end: str = "stripped") -> TrainData:
    """Train records -> samples. Missing images are counted and skipped, malformed records are errors.

    Stepwise groups the nodes of one response (same id, sample, question and image) into one sample when their
    prefixes nest as the PRM will see them (`prefix_end`); nodes that do not nest are scored apart."""
    records = read_records(path, required=TRAIN_FIELDS)
    skipped: dict = defaultdict(int)
    groups: dict = defaultdict(list)
    exists: dict = {}
    seen = (lambda t: t.strip()) if prefix_end == "stripped" else (lambda t: t)
    for i, r in enumerate(records):
        where = f"{path}: record {i + 1}"
        acc = r["accuracy"]
        if not isinstance(acc, (int, float)) or isinstance(acc, bool) or not 0 <= acc <= 1:
            raise DataError(f"{where}: accuracy must be a number in [0, 1], got {acc!r}")
        if not str(r["add"]).strip():
            skipped["empty step prefix"] += 1
            continue
        img = image_path(r, root)
        if img is not None and exists.setdefault(img, img.is_file()) is False:
            skipped["missing image"] += 1
            continue
        key = (r.get("id", i), r.get("sample", 0), r["input"], str(img)) if fmt == "stepwise" else i
        groups[key].append((str(r["add"]), float(acc), canonical(str(r["dataset"])), img, r.get("id", i)))
    samples, labels, domains, ids = [], [], [], []
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
    if not samples:
        raise DataError(f"{path}: no usable train record ({dict(skipped)})")
    return TrainData(samples, labels, domains, dict(skipped), ids)


@dataclass
class MetaData:
    samples: list[Sample]
    labels: list[float]
    skipped: dict
    without_steps: int  # records handled by the no-step rule
    # label ("true"/"false") -> {"with steps": n, "without steps": n}, over every record read (before the rule)
    steps_by_label: dict = field(default_factory=dict)
    path: str = ""

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


def load_meta(path: Path, root: Path, rule: str = "whole") -> MetaData:
    if rule not in NO_STEP_RULES:
        raise ValueError(f"meta rule must be one of {NO_STEP_RULES}; got {rule!r}")
    records = read_records(path, required=META_FIELDS)
    samples, labels, skipped, without = [], [], defaultdict(int), 0
    split: dict = {"true": Counter(), "false": Counter()}
    for i, r in enumerate(records):
        label = as_label(r["true_false"], f"{path}: record {i + 1}")
        img = image_path(r, root)
        if img is not None and not img.is_file():
            skipped["missing image"] += 1
            continue
        steps = find_steps(str(r["input"]))
        split["true" if label else "false"]["with steps" if steps else "without steps"] += 1
        s = meta_sample(r, img, rule, steps)
        if s is None:
            skipped["no step text (rule skip)"] += 1
            continue
        without += not steps
        samples.append(s)
        labels.append(label)
    if not samples:
        raise DataError(f"{path}: no usable meta record ({dict(skipped)})")
    return MetaData(samples, labels, dict(skipped), without, {k: dict(v) for k, v in split.items()}, str(path))
