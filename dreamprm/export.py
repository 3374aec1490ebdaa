"""Exports of MC step labels to the formats other PRM trainers read (`MC/export_trl.py`,
`MC/export_conversations.py`).

Both group the nodes of one response (id, sample), take the step texts from consecutive prefixes
(`step_text`) and turn an MC accuracy into a hard label with one rule: `accuracy > threshold`.

DEFAULT_THRESHOLD = 0.5, "most rollouts from this prefix reached the right answer". It is the midpoint
of the soft label the PRM here is trained to predict, and it needs rollouts to agree: a node starts from its
own response's verdict (times = 1), so under `> 0` every step of a right response is `+` whatever its
rollouts did. Threshold 0 is "some rollout was right": Math-Shepherd's hard estimate and the `mc_threshold` 0.0 of
VisualPRM400K.
"""
from __future__ import annotations

from collections import Counter

from .io import BadRecord, DataError, Skips, where
from .mc import check_node

DEFAULT_THRESHOLD = 0.5
CUT = "responses cut at a missing or inconsistent step"
IMAGE = "<image>"  # InternVL's placeholder, replaced by the image tokens in the first turn holding it

SYSTEM_PROMPT = (
    "You check a worked solution one step at a time. The first message gives the problem and the first "
    "step; every later message adds the next step. After each step reply with one character: '+' if the "
    "solution is correct up to and including this step, '-' if anything so far is wrong. Reply with "
    "nothing else.")


def first_turn(question: str, step: str) -> str:
    """The first user turn of a conversation row: the question, then step 1 (the question alone without one)."""
    return f"{question}\n\nSolution:\n{step}" if step else question


def step_text(prev: str, add: str) -> str | None:
    """Step k's text from prefixes k-1 (`prev`, "" for the first step) and k (`add`).

    `add` minus `prev` (trailing whitespace of `prev` ignored), surrounding whitespace stripped, so prefixes
    with a trailing separator (MC/tree.py: "...\\n\\n") and without one (the released train data) give the
    same steps. None when `add` does not extend `prev` or adds nothing.
    """
    head = prev.rstrip()
    if not add.startswith(head):
        return None
    return add[len(head):].strip() or None


def check_threshold(t: float) -> None:
    if not 0 <= t < 1:  # outside it every label is the same
        raise DataError(f"--threshold must be in [0, 1), got {t}")


def responses(nodes: list[dict], at: str = "nodes", skips: Skips | None = None, check=check_node,
              ) -> tuple[list[tuple[dict, list[str], list[float]]], Counter]:
    """(first node, step texts, accuracies) per response, in first-seen order; plus skip counts.

    Each node is checked (`check`, by default `mc.check_node`): a bad one is counted in `skips`, or without it is a DataError
    naming its file:line (`at`: record i for nodes not read from a file). A response whose nodes do not run
    1..K is cut at the gap: later steps would have no text for the missing one (the same for a prefix that
    does not extend the one before).
    """
    groups: dict[tuple, list[dict]] = {}
    for i, n in enumerate(nodes, 1):
        try:
            check(n)
        except BadRecord as e:
            loc = where(n, f"{at}: record {i}")
            if skips is None:
                raise DataError(f"{loc}: {e}") from None
            skips.bad(e, loc)
            continue
        groups.setdefault((n["id"], n.get("sample", 0)), []).append(n)
    out, skipped = [], Counter()
    for group in groups.values():
        group.sort(key=lambda n: n["sid"])
        steps, accs, prev = [], [], ""
        for want, n in enumerate(group, 1):
            text = step_text(prev, n["add"]) if n["sid"] == want else None
            if text is None:
                skipped[CUT] += 1
                break
            steps.append(text)
            accs.append(float(n["accuracy"]))
            prev = n["add"]
        if steps:
            out.append((group[0], steps, accs))
    return out, skipped


def to_trl(nodes: list[dict], threshold: float = DEFAULT_THRESHOLD, soft: bool = False,
           at: str = "nodes", skips: Skips | None = None) -> tuple[list[dict], Counter]:
    """TRL stepwise supervision, one row per response: {"prompt", "completions": [step, ...], "labels"}.

    Nodes are checked as `responses` does. Labels are booleans `accuracy > threshold`; `soft` keeps the
    accuracies as floats, which TRL's PRMTrainer floors with int() (see MC/README.md). Steps carry no
    trailing separator: the trainer appends its `step_separator` itself.
    """
    check_threshold(threshold)
    rows, skipped = responses(nodes, at, skips)
    return [{"prompt": n["input"], "completions": steps,
             "labels": accs if soft else [a > threshold for a in accs],
             "id": n["id"], "sample": n.get("sample", 0), "image_path": n.get("image_path"),
             "dataset": n.get("dataset", "")} for n, steps, accs in rows], skipped


def to_conversations(nodes: list[dict], threshold: float = DEFAULT_THRESHOLD,
                     at: str = "nodes", skips: Skips | None = None, check=check_node) -> tuple[list[dict], Counter]:
    """InternVL chat rows in the layout of VisualPRM400K, one per response.

    The layout follows the rows InternVL's VisualPRM pipeline writes (OpenGVLab/InternVL,
    internvl_chat/tools/reasoning_data_pipeline/visualprm_data_pipeline_postprocess.py) and DreamPRM-1.5 reads
    (coder-qicao/DreamPRM-1.5, data.py); the wording of the system prompt and first turn is this repo's own.

    {"id", "image", "conversations": [system, human (image, question, step 1), gpt "+"/"-", human (step 2),
    gpt, ...]}, read by InternVL's finetune script (JSONL) and DreamPRM-1.5's `data.py` (a JSON array).
    `id` is unique per response and the domain is stored as `domain`, not `dataset`: DreamPRM-1.5's
    `main_table.py` builds its weight table from `dataset` when rows have one but looks weights up by `id`.
    """
    check_threshold(threshold)
    rows, skipped = responses(nodes, at, skips, check)
    out = []
    for n, steps, accs in rows:
        image, question = n.get("image_path"), n["input"]
        if image and IMAGE not in question:
            question = f"{IMAGE}\n{question}"
        turns = [{"from": "system", "value": SYSTEM_PROMPT}]
        for k, (step, acc) in enumerate(zip(steps, accs)):
            text = first_turn(question, step) if k == 0 else step
            turns += [{"from": "human", "value": text}, {"from": "gpt", "value": "+" if acc > threshold else "-"}]
        sample = n.get("sample", 0)
        row = {"id": f"{n['id']}-{sample}", "question_id": n["id"], "sample": sample}
        if image:  # InternVL treats a row without `image` as text-only
            row["image"] = image
        out.append({**row, "domain": n.get("dataset", ""), "conversations": turns})
    return out, skipped
