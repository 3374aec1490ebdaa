"""The paper's two data-selection rules: train data from MC nodes (stage 5), meta data from MMMU responses
(stage 6). Pure functions over records, seeded, with the counts a summary needs.
"""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

from .domains import canonical
from .io import DataError, Record, Skips, where
from .samples import policy_responses
from .steps import has_final_answer, num_steps


# --- stage 5: train data ---------------------------------------------------------------------

def _kind(acc: float) -> str:
    return "0" if acc <= 0 else "1" if acc >= 1 else "mixed"


def _accuracy(n: dict) -> float:
    """A node's accuracy; anything but a finite number in [0, 1] is an error here (NaN would pass as
    "mixed"): readers check it (`mc.check_node`) and skip such nodes before a selection sees them."""
    a = n.get("accuracy")
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not (math.isfinite(a) and 0 <= a <= 1):
        raise DataError(f"{where(n)}: accuracy must be a finite number in [0, 1], got {a!r}")
    return float(a)


def balance(nodes: list[dict], cap: int = 1000, seed: int = 42) -> tuple[list[dict], dict[str, Counter]]:
    """Per domain at most `cap` nodes: every mixed node first (0 < accuracy < 1; a random `cap` if more), then
    equal numbers of accuracy-0 and accuracy-1 nodes, then any remainder from the leftovers, all drawn with a
    per-domain seeded shuffle. Selected nodes keep their input order. Returns (selected, per-domain counts
    of what was available and what was taken)."""
    by_domain: dict[str, list[int]] = defaultdict(list)
    accs = [_accuracy(n) for n in nodes]
    for i, n in enumerate(nodes):
        by_domain[canonical(str(n.get("dataset", "")))].append(i)
    chosen: list[int] = []
    stats: dict[str, Counter] = {}
    for domain, idx in sorted(by_domain.items()):
        rng = random.Random(f"{seed}:{domain}")  # str seeds are stable across processes
        pools = {k: [i for i in idx if _kind(accs[i]) == k] for k in ("mixed", "0", "1")}
        for pool in pools.values():
            rng.shuffle(pool)
        take = pools["mixed"][:cap]
        room = cap - len(take)
        pairs = min(len(pools["0"]), len(pools["1"]), room // 2)
        take += pools["0"][:pairs] + pools["1"][:pairs]
        rest = pools["0"][pairs:] + pools["1"][pairs:]
        rng.shuffle(rest)
        take += rest[: room - 2 * pairs]
        chosen += take
        c = Counter({f"available {k}": len(v) for k, v in pools.items()})
        c.update(f"selected {_kind(accs[i])}" for i in take)
        stats[domain] = c
    return [nodes[i] for i in sorted(chosen)], stats


def histogram(values: list[float], edges=(0.0, 0.25, 0.5, 0.75, 1.0)) -> Counter:
    """Counts of exactly 0, each (lo, hi] bin, and exactly 1: the shape of MC labels at a glance."""
    h = Counter()
    for v in values:
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ValueError(f"histogram of labels: {v!r} is not a finite number")
        if v <= edges[0]:
            h["=0"] += 1
        elif v >= edges[-1]:
            h["=1"] += 1
        else:
            lo = max(e for e in edges if e < v)
            hi = min(e for e in edges if e >= v)
            h[f"({lo:g},{hi:g}]"] += 1
    return h


# --- stage 6: meta data ----------------------------------------------------------------------

def meta_rule(records: list[dict], per_kind: int = 122, seed: int = 42, require_steps: bool = True,
              skips: Skips | None = None) -> tuple[list[dict], Counter]:
    """The paper's meta set from several responses per question.

    Only responses with a final answer count (and, with `require_steps`, with at least one step: a chain
    without steps gives the upper level no prefix to score). Where a question's counted responses disagree,
    its first right and first wrong response (by sample index) are both taken; of the questions whose
    responses all agree, up to `per_kind` always-right and `per_kind` always-wrong ones are drawn at random
    (seeded; the original took the first ones in file order, which follows MMMU's subject order) and give
    their first response. Output: {id, sample, true_false, input = question + "\\n\\n" + response,
    image_path}, in question order. With `skips` repeated responses and those without a final answer or steps
    are also counted there with their locations.
    """
    groups: dict[object, list[dict]] = {}
    for _, r, right in policy_responses(records, skips=skips):
        rec = Record({**r, "true_false": right})
        rec.where = where(r)  # the copy keeps the file:line of a skip
        groups.setdefault(r["id"], []).append(rec)
    stats: Counter = Counter(questions=len(groups), responses=len(records))
    pairs, agree = [], {True: [], False: []}
    for qid, rs in groups.items():
        usable = []
        for r in sorted(rs, key=lambda r: r.get("sample", 0)):
            if not has_final_answer(r["response"] or ""):
                stats["skipped responses: no final answer"] += 1
                if skips is not None:
                    skips.add("no final answer", where(r))
            elif require_steps and num_steps(r["response"]) == 0:
                stats["skipped responses: no steps"] += 1
                if skips is not None:
                    skips.add("no steps", where(r))
            else:
                usable.append(r)
        right = [r for r in usable if r["true_false"]]
        wrong = [r for r in usable if not r["true_false"]]
        if right and wrong:
            pairs += [right[0], wrong[0]]
            stats["questions with disagreeing responses"] += 1
        elif usable:
            agree[bool(right)].append(usable[0])
        else:
            stats["questions without a usable response"] += 1
    picked = list(pairs)
    rng = random.Random(seed)
    for label in (True, False):
        pool = agree[label]
        stats[f"always-{'right' if label else 'wrong'} questions"] = len(pool)
        picked += rng.sample(pool, min(per_kind, len(pool)))
    order = {qid: k for k, qid in enumerate(groups)}
    picked.sort(key=lambda r: (order[r["id"]], not r["true_false"]))
    out = [{"id": r["id"], "sample": r.get("sample", 0), "true_false": bool(r["true_false"]),
            "input": f"{r['input']}\n\n{r['response']}", "image_path": r.get("image_path")} for r in picked]
    stats["records"], stats["true"] = len(out), sum(r["true_false"] for r in out)
    stats["false"] = len(out) - stats["true"]
    return out, stats
