"""We-Math testmini (We-Math/We-Math): multiple-choice visual math; the benchmark scores answers
grouped by `key` (one-step sub-questions and the composite question), so `key` is kept.

Card/lmms-eval schema: ID, split, knowledge concept, question, option (one string holding every option),
answer (a letter), image_path (the image), key, question number, knowledge concept description.
The upstream testmini.json + image folder works as a local copy too.
"""
import re

from dreamprm.data import read_rows, text

NAME, HUB_ID, SPLIT = "wemath", "We-Math/We-Math", "testmini"
_MARK = re.compile(r"(?:^|(?<=[;\n]))\s*([A-Z])\s*[.:]\s*")


def rows(local, cfg):
    return read_rows(HUB_ID, SPLIT, local=local, cache_dir=cfg.cache_dir)


def split_options(s: str) -> list[str] | None:
    """'A. 3; B. 4; C. 5' -> ['3', '4', '5']; None unless the letters run A, B, C, ... in order."""
    marks = list(_MARK.finditer(s))
    if len(marks) < 2 or [m.group(1) for m in marks] != [chr(65 + i) for i in range(len(marks))]:
        return None
    ends = [m.start() for m in marks[1:]] + [len(s)]
    return [s[m.end():e].strip().rstrip(";").strip() for m, e in zip(marks, ends)]


def convert(row: dict) -> dict:
    question, raw = text(row.get("question")), text(row.get("option"))
    options = split_options(raw)
    if raw and options is None:  # keep the options readable even when they do not parse
        question = f"{question}\n{raw}"
    key = text(row.get("key"))
    return {
        "id": f"{text(row.get('ID'))}@{key}" if key else text(row.get("ID")),
        "input": question,
        "ground_truth": row.get("answer"),
        "dataset": "WeMath",
        "type": "multi_choice",
        "hint": "",
        "options": options,
        "key": key,
        "knowledge_concept": text(row.get("knowledge concept")),
        "image": row.get("image_path"),
    }
