"""MM-Vet's official grader input: one JSON object per method, question key -> the answer to grade.

The official evaluator (yuweihao/MM-Vet, `mm-vet_evaluator.py`) loads `<result_path>/<model>.json` and, for
every key of `mm-vet.json` ("v1_0" .. "v1_217"), reads `results[key]`: a missing key stops it, and the value
is put as "Prediction" into one row of a few-shot table (question | ground truth | prediction | score) that
GPT-4 completes with a soft score in [0, 1]. Its examples are short answers, so what is graded is the
candidate's final answer, not its chain of thought; the paper's code exported the text after the last
`Final answer: ` (the whole response when there is none), which `grader_answer` reproduces.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from .io import BadRecord, DataError, Skips, number, read_records, text, where
from .steps import _last_final_match  # the one definition of the Final-answer marker

_KEY = re.compile(r"v1_(\d+)")
_EMPHASIS = " \t\r\n*_"


def grader_key(qid) -> str:
    """The grader's key "v1_<n>" of a question id ("v1_12", or a bare 12 / "12")."""
    s = str(qid).strip()
    if s.isdigit():
        return f"v1_{int(s)}"
    if _KEY.fullmatch(s):
        return s
    raise DataError(f"question id {qid!r} is no MM-Vet v1 id (v1_<n>): the grader could not look it up")


def grader_answer(response: str, text: str = "final") -> tuple[str, bool]:
    """(what the grader reads, whether the response had a final answer). `final`: everything after the last
    Final-answer marker, kept whole to the end (MM-Vet's explanation questions get paragraphs); without a
    marker the whole response, as the paper's code did. `response`: always the whole response."""
    response = response or ""
    m = _last_final_match(response)
    if text == "response" or m is None:
        return response.strip(), m is not None
    return response[m[1]:].strip(_EMPHASIS), True


def check_key(r: dict) -> None:
    """A record's id must be a grader key (a read_records check)."""
    try:
        grader_key(r["id"])
    except DataError as e:
        raise BadRecord("not an MM-Vet id", str(e)) from None


def _check_candidate(r: dict) -> None:
    check_key(r)
    text(r, "response", allow_none=True)  # a failed generation: exported as ""
    if r.get("sample") is not None:
        number(r, "sample", 0, None, integer=True)


def read_candidates(path: Path, skips: Skips | None = None) -> dict:
    """(grader key, sample) -> response, from a candidate file (runs/rollouts/mmvet.jsonl). A bad record (an id
    that is no grader key, a wrong type, a repeated (id, sample): the first is kept) is counted in `skips`, or
    is a DataError naming file:line without."""
    out, seen, first = {}, Counter(), {}
    for r in read_records(path, required=("id", "response"), check=_check_candidate, skips=skips):
        key = grader_key(r["id"])
        sample = seen[key] if r.get("sample") is None else int(r["sample"])  # as dreamprm.bon numbers them
        seen[key] += 1
        if (key, sample) in out:
            detail = f"{key} sample {sample} is also at {first[key, sample]}"
            if skips is None:
                raise DataError(f"{where(r)}: duplicate candidate: {detail}")
            skips.add("duplicate candidate", where(r), detail)
            continue
        out[key, sample], first[key, sample] = str(r["response"] or ""), where(r)
    return out


def _check_selection(r: dict) -> None:
    check_key(r)
    number(r, "sample", 0, None, integer=True)
    text(r, "method")
    picks = r.get("picks") or {}
    if not isinstance(picks, dict):
        raise BadRecord("wrong type", f"picks must be an object, got {picks!r}")
    for method in picks:
        number(picks, method, 0, None, integer=True)


def selections(path: Path, skips: Skips | None = None) -> tuple[str, dict[str, dict]]:
    """(the run's main method, method -> {grader key: sample}) from a BoN selection file (dreamprm.bon writes
    runs/bon/<name>/<benchmark>.selected.jsonl): the main pick under its `method` (`prm:<aggregation>` for a
    PRM, `orm` for a trained ORM's run, `self_consistency` for a run without scores) and every side pick in
    `picks` (`orm_proxy`, `self_consistency`, ...). Bad records: counted in `skips`, or a DataError."""
    out: dict[str, dict] = {}
    main = None
    for r in read_records(path, required=("id", "sample", "method"), check=_check_selection, skips=skips):
        key = grader_key(r["id"])
        main = main or r["method"]
        for method, sample in {r["method"]: r["sample"], **(r.get("picks") or {})}.items():
            out.setdefault(method, {})[key] = int(sample)
    return main or "", out


def grader_results(keys: list[str], picks: dict, candidates: dict, text: str = "final") -> tuple[dict, dict]:
    """The grader's JSON object (every key of `keys`, in order; "" where nothing was picked) and counts."""
    results, counts = {}, {"no candidate (empty answer)": 0, "responses without a final answer": 0}
    for key in keys:
        if key not in picks:
            results[key] = ""
            counts["no candidate (empty answer)"] += 1
            continue
        if (key, picks[key]) not in candidates:
            raise DataError(f"{key}: the selected sample {picks[key]} is not in the candidate file")
        results[key], has_final = grader_answer(candidates[key, picks[key]], text)
        counts["responses without a final answer"] += not has_final
    return results, counts


def key_order(keys) -> list[str]:
    return sorted(set(keys), key=lambda k: int(k[3:]))
