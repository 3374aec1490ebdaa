"""From record files to the generative PRM's `Chat`s, for training (lower and upper level).

Two shapes of input, told apart per file by its first record:

- conversation rows `{"id", "image", "conversations": [{"from": "system" | "human" | "gpt", "value"}, ...]}`:
  `MC/export_conversations.py`'s output, VisualPRM400K / InternVL chat data and DreamPRM-1.5's released train
  and meta JSON. Turns are kept as they are: every gpt turn is a verdict (`+` / `-`) read as one step, the human
  turns before it are its user turns (the 1.5 meta rows put the question and the response in two), a row's own
  system turn is its system prompt. Meta rows also carry `true_false`.
- this repo's records: MC-labelled nodes (train; `+` when accuracy > threshold, grouped into responses by
  `dreamprm.export.to_conversations`) or meta records (`input`, `true_false`; split as `samples.meta_sample`).

Either way the result is a `samples.TrainData` / `samples.MetaData` whose samples are chats, so the trainer
reads both PRM kinds' data alike. A bad record is skipped and counted, naming its file:line.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .domains import canonical
from .export import DEFAULT_THRESHOLD, SYSTEM_PROMPT, to_conversations
from .generative import LABELS, Chat, sample_chat
from .io import BadRecord, DataError, Skips, number, read_records, where
from .samples import TRAIN_FIELDS, MetaData, TrainData, _image_problem, check_train, label, load_meta

ROLES = ("system", "human", "gpt")
NO_DOMAIN = "unknown"  # the domain of a row without `domain` / `dataset` (DreamPRM-1.5's rows have none)


def is_conversation(record: dict) -> bool:
    return "conversations" in record


def row_image(r: dict) -> str | None:
    """A row's image path: `image` as a string, or the first of a list (InternVL's multi-image rows)."""
    img = r.get("image")
    if isinstance(img, list):
        img = img[0] if img else None
    if img is not None and not isinstance(img, str):
        raise BadRecord("wrong type", f"image must be a path or a list of paths, got {img!r}")
    return img or None


def check_row(r: dict) -> None:
    """A conversation row's turns (a `read_records` check): a non-empty list of {from, value}, every gpt turn
    `+` or `-` after at least one human turn, and at least one gpt turn."""
    turns = r.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise BadRecord("wrong type", "conversations must be a non-empty list of turns")
    prev = None
    for k, t in enumerate(turns, 1):
        if not isinstance(t, dict) or t.get("from") not in ROLES or not isinstance(t.get("value"), str):
            raise BadRecord("bad turn", f"turn {k} must be {{from: system|human|gpt, value: text}}, got {t!r}")
        if t["from"] == "gpt":
            if t["value"].strip() not in LABELS:
                raise BadRecord("bad label", f"turn {k}: a gpt turn must be '+' or '-', got {t['value'][:40]!r}")
            if prev != "human":
                raise BadRecord("bad turn", f"turn {k}: a gpt turn must follow a human turn")
        prev = t["from"]
    if not any(t["from"] == "gpt" for t in turns):
        raise BadRecord("no steps", "no gpt turn: nothing to score")
    row_image(r)
    if r.get("id") is not None and (isinstance(r["id"], bool) or not isinstance(r["id"], (str, int))):
        raise BadRecord("wrong type", f"id must be a string or an integer, got {r['id']!r}")


def row_chat(r: dict, root: Path, system: str | None = None) -> Chat:
    """A checked conversation row as a chat; `system` for rows without a system turn."""
    system, users, labels = system or SYSTEM_PROMPT, [[]], []
    for t in r["conversations"]:
        if t["from"] == "system":
            system = t["value"]
        elif t["from"] == "human":
            users[-1].append(t["value"])
        else:
            labels.append(t["value"].strip() == "+")
            users.append([])
    img = row_image(r)
    if img is not None and not Path(img).is_absolute():
        img = str(root / img)
    return Chat(img, users[:len(labels)], labels, system)  # human turns after the last verdict are never read


def check_train_node(r: dict) -> None:
    """A train record as the lower level reads it (`samples.check_train`), plus what groups it into a response:
    its question `id` and step number `sid` (our train data and the released train JSON both have them)."""
    for key in (*TRAIN_FIELDS, "id", "sid"):
        if key not in r:
            raise BadRecord("missing field", f"no {key!r}")
    check_train(r)
    number(r, "sid", 1, None, integer=True)


def _with_image_check(check, root: Path, images):
    """`check`, then the record's image (rows: `image`, our records: `image_path`) exists and opens."""
    problem = _image_problem(images)

    def checked(r):
        check(r)
        img = row_image(r) if is_conversation(r) else r.get("image_path")
        if img and (bad := problem(Path(img) if Path(img).is_absolute() else root / img)) is not None:
            raise bad
    return checked


def load_train_chats(path: Path, root: Path, images=None, skips: Skips | None = None,
                     threshold: float = DEFAULT_THRESHOLD) -> TrainData:
    """Train chats from conversation rows or MC-labelled nodes (see the module doc). Instance id: the row's `id`
    (unique per response in our export), else its file:line; domain: `domain`, else `dataset`, else "unknown"."""
    skips = Skips(f"train {path}") if skips is None else skips
    shape: dict = {}

    def check(r):
        if shape.setdefault("rows", is_conversation(r)):  # the first record decides the file's shape
            check_row(r)
        else:
            check_train_node(r)

    records = read_records(path, check=_with_image_check(check, root, images), skips=skips)
    cut: Counter = Counter()
    if shape.get("rows", True):
        located = [(r, where(r)) for r in records]
    else:  # MC nodes: one row per response, located at its first node
        rows, cut = to_conversations(records, threshold, at=str(path), skips=skips, check=check_train_node)
        first = {}
        for n in records:
            first.setdefault((n["id"], n.get("sample", 0)), where(n))
        located = [(row, first[(row["question_id"], row["sample"])]) for row in rows]
    chats, labels, domains, ids, instances, domain_where, seen = [], [], [], [], [], {}, {}
    for r, loc in located:
        instance = str(r["id"]) if r.get("id") is not None else loc
        if instance in seen:  # one weight per instance id
            skips.add("duplicate id", loc, f"id {instance!r} first at {seen[instance]}")
            continue
        seen[instance] = loc
        chat = row_chat(r, root)
        domain = canonical(str(r.get("domain") or r.get("dataset") or NO_DOMAIN))
        domain_where.setdefault(domain, loc)
        chats.append(chat)
        labels.append(chat.labels)
        domains.append(domain)
        ids.append(r.get("question_id", r.get("id")))
        instances.append(instance)
    if not chats:
        raise DataError(f"{path}: no usable train record ({skips.line()})")
    return TrainData(chats, labels, domains, dict(skips.counts + cut), ids, skips, {}, domain_where, instances)


def load_meta_chats(path: Path, root: Path, rule: str = "whole", images=None, skips: Skips | None = None,
                    system: str | None = None) -> MetaData:
    """Meta chats from conversation rows with `true_false` (DreamPRM-1.5's meta JSON) or this repo's meta
    records (`samples.load_meta`, then `generative.sample_chat`). `system`: the prompt of chats built from our
    records and of rows without a system turn."""
    system = system or SYSTEM_PROMPT
    first = read_records(path, skips=Skips(str(path)))[:1]  # the first good record decides the shape
    if not first or not is_conversation(first[0]):
        data = load_meta(path, root, rule, images, skips)
        data.samples = [sample_chat(s, system) for s in data.samples]
        return data
    skips = Skips(f"meta {path}") if skips is None else skips

    def check(r):
        check_row(r)
        label(r.get("true_false"))

    records = read_records(path, required=("true_false",), check=_with_image_check(check, root, images), skips=skips)
    chats = [row_chat(r, root, system) for r in records]
    labels = [label(r["true_false"]) for r in records]
    if not chats:
        raise DataError(f"{path}: no usable meta record ({skips.line()})")
    by_label = {k: {"with steps": sum(1 for y in labels if y == v)} for k, v in (("true", 1.0), ("false", 0.0))}
    dropped = Skips(f"meta {path}")
    return MetaData(chats, labels, dict(skips.counts), 0, by_label, str(path), skips, dropped)


def train_system(data: TrainData) -> str:
    """The system prompt most train chats carry: the one a trained PRM records for scoring."""
    return Counter(c.system for c in data.samples).most_common(1)[0][0]

