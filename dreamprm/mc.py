"""Monte Carlo step labels (SPEC stages 3-4): the step-prefix tree, the expansion rule, batched estimation.

A tree node is one step prefix of one policy response:

    {id, sample, sid, input, add, ground_truth, options, image_path, dataset, score, times, accuracy}

`sid` is the step number (1-based), `add` the prefix `steps.step_prefixes(response)[sid - 1]`; the node
starts from the full response's verdict (score = 1 if right else 0, times = 1). Estimation rolls the prefix
out with `prompts.completion_prompt`, judges each completion's final answer and updates score / times /
accuracy = score / times until the expansion rule says stop.

Batched, not sequential: the engine keeps a pool of unfinished nodes and sends every rollout they still
certainly need to the backend in one call. A rule reports how many more rollouts are *certain* given the
counts so far, which is what lets it batch without changing the result: the paper's rule ("continue while
0 < accuracy < 1 or times < min") needs min - times rollouts up to the minimum, and once a node is mixed it
stays mixed (one more rollout cannot make a mixed score all-right or all-wrong), so it then needs exactly
max - times. Rollout r of a node is seeded with (seed, id, sample, sid, r): its outcome does not depend on
the pool, the batch or a resume on backends that seed per request (see backends.py).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from .backends import Backend, Request, stable_seed
from .io import AppendWriter, DataError
from .judge import Judge, JudgeItem
from .prompts import completion_prompt
from .steps import final_answer_text, has_final_answer, step_prefixes

POLICY_FIELDS = ("id", "response", "input", "true_false")
NODE_FIELDS = ("id", "sid", "input", "add", "ground_truth", "image_path", "dataset", "score", "times",
               "accuracy")


def node_key(node: dict) -> tuple:
    return node["id"], node.get("sample", 0), node["sid"]


# --- stage 3: tree ---------------------------------------------------------------------------

def build_tree(records: list[dict], image_exists: Callable[[str], bool] | None = None,
               where: str = "responses") -> tuple[list[dict], Counter]:
    """One node per step of every usable response; returns (nodes, skipped response counts by reason)."""
    nodes, skipped, seen = [], Counter(), {}
    for i, r in enumerate(records):
        key = (r["id"], r.get("sample", 0))
        if key in seen:
            raise DataError(f"{where}: record {i + 1}: response (id={key[0]!r}, sample={key[1]}) appears twice "
                            f"(first at record {seen[key] + 1})")
        seen[key] = i
        if not isinstance(r["true_false"], bool):
            raise DataError(f"{where}: record {i + 1}: true_false must be true or false, got {r['true_false']!r}")
        response = r["response"] or ""
        if not has_final_answer(response):
            skipped["no final answer"] += 1
            continue
        prefixes = step_prefixes(response)
        if not prefixes:
            skipped["no steps"] += 1
            continue
        if r.get("image_path") and image_exists is not None and not image_exists(r["image_path"]):
            skipped["missing image"] += 1
            continue
        if "ground_truth" not in r:
            raise DataError(f"{where}: record {i + 1}: missing field ground_truth (needed to judge rollouts)")
        score = int(r["true_false"])
        for sid, add in enumerate(prefixes, 1):
            nodes.append({"id": r["id"], "sample": r.get("sample", 0), "sid": sid, "input": r["input"],
                          "add": add, "ground_truth": r["ground_truth"], "options": r.get("options"),
                          "image_path": r.get("image_path"), "dataset": r.get("dataset", ""),
                          "score": score, "times": 1, "accuracy": float(score)})
    return nodes, skipped


# --- stage 4: expansion rules ----------------------------------------------------------------

def paper_rule(score: int, times: int, lo: int, hi: int) -> int:
    """The original: continue while 0 < accuracy < 1 or times < lo; capped at hi."""
    if times >= hi:
        return 0
    if times < lo:
        return lo - times
    return hi - times if 0 < score < times else 0  # mixed is absorbing: it runs to the cap


def fixed_rule(score: int, times: int, lo: int, hi: int) -> int:
    """Exactly lo rollouts (counting the original response) for every node."""
    return max(lo - times, 0)


# name -> rule(score, times, min, max) -> rollouts certainly needed next (0 = finished). A new rule must
# only return rollouts the one-at-a-time loop would surely take, or batching would change the labels.
RULES: dict[str, Callable[[int, int, int, int], int]] = {"paper": paper_rule, "fixed": fixed_rule}


@dataclass
class MCSettings:
    min_rollouts: int = 4
    max_rollouts: int = 16
    rule: str = "paper"
    temperature: float = 1.0
    max_new_tokens: int = 1024
    seed: int = 42
    pool: int = 64  # unfinished nodes kept in flight; each backend call carries all their certain rollouts

    def check(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        if not 1 <= self.min_rollouts <= self.max_rollouts:
            raise ValueError(f"need 1 <= min_rollouts <= max_rollouts, got {self.min_rollouts}, {self.max_rollouts}")
        if self.pool < 1:
            raise ValueError("pool must be at least 1")


def estimate(nodes: list[dict], backend: Backend, judge: Judge, writer: AppendWriter, s: MCSettings,
             resolve_image: Callable[[str], Path] = Path, progress: bool = True) -> Counter:
    """Expand every node not yet in `writer`, appending each as soon as it is finished."""
    s.check()
    rule = RULES[s.rule]
    todo = [n for n in nodes if not writer.done(node_key(n))]
    stats = Counter(resumed=len(nodes) - len(todo))
    active: list[dict] = []
    nxt = 0  # next node of `todo` to take into the pool
    bar = tqdm(total=len(todo), desc="MC estimation", unit="node", disable=not progress)
    while active or nxt < len(todo):
        take = todo[nxt: nxt + s.pool - len(active)]  # refill the pool
        active += [dict(n) for n in take]
        nxt += len(take)
        requests, owners, still = [], [], []
        for node in active:
            k = rule(node["score"], node["times"], s.min_rollouts, s.max_rollouts)
            if k == 0:
                writer.write(node)
                stats["nodes"] += 1
                bar.update(1)
                continue
            still.append(node)
            image = str(resolve_image(node["image_path"])) if node.get("image_path") else None
            text = completion_prompt(node["input"], node["add"])
            for r in range(node["times"], node["times"] + k):  # rollout r; r = 0 is the original response
                seed = stable_seed(s.seed, node["id"], node.get("sample", 0), node["sid"], r)
                requests.append(Request(text, image, node, prefix=node["add"], seed=seed))
                owners.append(node)
        active = still
        if not requests:
            continue
        texts = [o[0] for o in backend.generate(requests, 1, s.temperature, s.max_new_tokens)]
        verdicts = judge([JudgeItem(n["input"], final_answer_text(t), str(n["ground_truth"]), n.get("options"))
                          for n, t in zip(owners, texts)])
        for node, (ok, _) in zip(owners, verdicts):
            node["score"] += int(ok)
            node["times"] += 1
            node["accuracy"] = node["score"] / node["times"]
        stats["completions"] += len(requests)
        bar.set_postfix(completions=stats["completions"], refresh=False)
    bar.close()
    return stats


# --- export ----------------------------------------------------------------------------------

def to_trl(nodes: list[dict], threshold: float | None = None) -> tuple[list[dict], Counter]:
    """TRL stepwise supervision, one row per response: {"prompt", "completions": [step, ...], "labels"}.

    Steps are the differences between consecutive prefixes; labels are the MC accuracies (soft floats), or
    booleans `accuracy > threshold` when a threshold is given (0 gives Math-Shepherd's hard label: "some
    rollout from here reached the right answer"). A response whose nodes do not run 1..K without a gap is
    cut at the gap, since later steps would have no text for the missing one.
    """
    groups: dict[tuple, list[dict]] = {}
    for n in nodes:
        groups.setdefault((n["id"], n.get("sample", 0)), []).append(n)
    rows, skipped = [], Counter()
    for (qid, sample), group in groups.items():
        group.sort(key=lambda n: n["sid"])
        steps, labels, prev = [], [], ""
        for want, n in enumerate(group, 1):
            if n["sid"] != want or not n["add"].startswith(prev):
                skipped["responses cut at a missing or inconsistent step"] += 1
                break
            steps.append(n["add"][len(prev):])
            labels.append(float(n["accuracy"]) if threshold is None else bool(n["accuracy"] > threshold))
            prev = n["add"]
        if not steps:
            continue
        rows.append({"prompt": group[0]["input"], "completions": steps, "labels": labels, "id": qid,
                     "sample": sample, "image_path": group[0].get("image_path"),
                     "dataset": group[0].get("dataset", "")})
    return rows, skipped
