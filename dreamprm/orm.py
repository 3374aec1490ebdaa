"""The ORM baseline's train data (Table 1's "ORM" row): one record per policy response, labelled by its outcome.

An outcome reward model is the PRM's backbone and head (`prm.py`) trained on whole-response correctness
instead of MC step labels. Its records use the train-record format, so the existing trainer trains it
(`reweighting/train.py --baseline`: every weight 1, plain supervised training):

    {id, sample, sid: 0, input, add: the whole response, ground_truth, image_path, dataset, accuracy: 1.0 | 0.0}

`sid` 0 marks that `add` is not a step prefix: it is the whole response, final answer line included, which
is also what best-of-N scores with `BoN/score.py --unit response`.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Callable

from .domains import canonical
from .io import BadRecord, Skips
from .mc import SkipCounter, check_fields, image_verdict
from .samples import policy_responses
from .steps import has_final_answer, num_steps


def orm_records(records: list[dict], image_problem: Callable[[str], BadRecord | None] | None = None,
                require_steps: bool = False, per_domain: int = 0, seed: int = 42,
                where: str = "responses", skips: Skips | None = None) -> tuple[list[dict], Counter]:
    """Policy records {id, response, input, true_false, ...} -> ORM train records, plus skip counts by reason.

    Kept: responses with a final answer (as the PRM's tree keeps them; without one the answer was never
    given, and best-of-N ranks such candidates last). Responses without steps are kept unless
    `require_steps`: an outcome label does not need steps. `per_domain` > 0 keeps at most that many records
    per domain (a seeded random subset, in input order); 0 keeps the data as it is. A bad image
    (`image_problem`, e.g. cfg.image_problem) skips the record. With `skips` every skip of
    a bad record is counted there too, with its location; without it a wrong type is a DataError.
    """
    out, skip = [], SkipCounter(skips, where)
    skipped = skip.counts
    for i, r, right in policy_responses(records, where, skips):
        label = float(right)
        try:
            check_fields(r, judged=False)  # an ORM record needs no ground truth: its label is true_false
        except BadRecord as e:
            skip(e.kind, r, i, e.detail, fatal=True)
            continue
        response = str(r["response"] or "")
        if not has_final_answer(response):
            skip("no final answer", r, i)
        elif require_steps and num_steps(response) == 0:
            skip("no steps", r, i)
        elif (bad := image_verdict(r.get("image_path"), image_problem)) is not None:
            skip(bad.kind, r, i, bad.detail)
        else:
            out.append({"id": r["id"], "sample": r.get("sample", 0), "sid": 0, "input": r["input"],
                        "add": response, "ground_truth": r.get("ground_truth"), "image_path": r.get("image_path"),
                        "dataset": r.get("dataset") or "", "accuracy": label})
    if per_domain > 0:
        by_domain = defaultdict(list)
        for k, x in enumerate(out):
            by_domain[canonical(str(x["dataset"]))].append(k)
        keep = set()
        for domain, idx in sorted(by_domain.items()):
            if len(idx) > per_domain:
                skipped[f"over the cap of {per_domain} per domain"] += len(idx) - per_domain
                idx = random.Random(f"{seed}:{domain}").sample(idx, per_domain)  # str seeds: stable across runs
            keep.update(idx)
        out = [x for k, x in enumerate(out) if k in keep]
    return out, skipped
