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
from .io import (AppendWriter, BadRecord, DataError, Record, Skips, number, read_records, require, text, where,
                 write_json)
from .judge import Judge, JudgeItem
from .prompts import completion_prompt
from .samples import check_counts, policy_responses
from .shards import done_marker
from .steps import final_answer_text, has_final_answer, step_prefixes

POLICY_FIELDS = ("id", "response", "input", "true_false")
NODE_FIELDS = ("id", "sid", "input", "add", "ground_truth", "image_path", "dataset", "score", "times",
               "accuracy")


def node_key(node: dict) -> tuple:
    return node["id"], node.get("sample", 0), node["sid"]


# --- checks shared by the readers of policy records and nodes -------------------------------------

def check_fields(r: dict, judged: bool = True) -> None:
    """What every node (and the policy record it comes from) must hold besides the step texts: a usable id and
    sample number, strings (or null) where the question, image path and domain are expected, and, when its
    rollouts are to be `judged`, a ground truth and options (a list or null) to judge them against."""
    if isinstance(r["id"], bool) or not isinstance(r["id"], (str, int)):
        raise BadRecord("wrong type", f"id must be a string or an integer, got {r['id']!r}")
    if r.get("sample") is not None:
        number(r, "sample", 0, None, integer=True)
    text(r, "input")
    text(r, "image_path", allow_none=True)
    text(r, "dataset", allow_none=True)
    if not judged:
        return
    gt = r.get("ground_truth")
    if gt is None or isinstance(gt, bool) or not isinstance(gt, (str, int, float)):
        # str(None) would be judged like any answer: every rollout "wrong", a silently wrong label
        raise BadRecord("wrong type", f"ground_truth must be a string or a number, got {gt!r}")
    if r.get("options") is not None and not isinstance(r["options"], list):  # the judge reads it as a list
        raise BadRecord("wrong type", f"options must be a list or null, got {r['options']!r}")


def check_node(r: dict) -> None:
    """A `read_records` check of a tree or labelled node: whole numbers where counts are expected, sid >= 1,
    times >= 1, 0 <= score <= times, accuracy finite in [0, 1] and equal to score / times, strings where
    strings are expected, and a non-empty step prefix."""
    require(r, NODE_FIELDS)
    check_fields(r)
    number(r, "sid", 1, None, integer=True)
    if not text(r, "add").strip():
        raise BadRecord("empty step prefix", "add holds no text")  # the kind load_train counts
    check_counts(r, number(r, "accuracy", 0, 1))


def read_nodes(path: str | Path, skips: Skips, check: Callable[[dict], None] = check_node) -> list[Record]:
    """Tree or labelled nodes, checked (`check_node`, or a `check` that calls it); of nodes with one
    (id, sample, sid) the first is kept. Bad and repeated nodes are counted in `skips`."""
    nodes, first = [], {}
    for n in read_records(path, required=NODE_FIELDS, check=check, skips=skips):
        k = node_key(n)
        if k in first:
            skips.add("duplicate node", where(n), f"id={k[0]!r}, sample={k[1]!r}, sid={k[2]} first at {first[k]}")
            continue
        first[k] = where(n)
        nodes.append(n)
    return nodes


def write_summary(out: str | Path, summary: dict) -> None:
    """The `.done` marker beside a whole-file output: the run's JSON summary, as `shards.finalize` writes it
    for the append-only stages (read back with `shards.read_marker`)."""
    write_json(done_marker(out), summary)


class SkipCounter:
    """Counts a skipped policy record by kind (the returned Counter) and, with `skips`, with its location.
    Without `skips` a malformed record (not an expected skip like "no final answer") is a DataError."""

    def __init__(self, skips: Skips | None, at: str):
        self.counts, self.skips, self.at = Counter(), skips, at

    def __call__(self, kind: str, r: dict, i: int, detail: str = "", fatal: bool = False) -> None:
        loc = where(r, f"{self.at}: record {i}")
        if fatal and self.skips is None:
            raise DataError(f"{loc}: {kind}: {detail}" if detail else f"{loc}: {kind}")
        self.counts[kind] += 1
        if self.skips is not None:
            self.skips.add(kind, loc, detail)


def image_verdict(path, image_problem=None) -> BadRecord | None:
    """The image check of a record: None without an image or a check, else `image_problem(path)`."""
    return image_problem(path) if path and image_problem is not None else None


# --- stage 3: tree ---------------------------------------------------------------------------

def build_tree(records: list[dict], image_problem: Callable[[str], BadRecord | None] | None = None,
               where: str = "responses", skips: Skips | None = None) -> tuple[list[dict], Counter]:
    """One node per step of every usable response; returns (nodes, skipped response counts by kind).

    Skipped: no final answer, no steps, a bad image (`image_problem`, e.g. cfg.image_problem), and, with `skips`, malformed records (no ground truth, wrong types), each counted in
    `skips` with its location too. Without `skips` a malformed record is a DataError."""
    nodes, skip = [], SkipCounter(skips, where)
    for i, r, right in policy_responses(records, where, skips):
        try:
            require(r, ["ground_truth"])  # needed to judge the rollouts
            check_fields(r)
        except BadRecord as e:
            skip(e.kind, r, i, e.detail, fatal=True)
            continue
        response = r["response"] or ""
        if not has_final_answer(response):
            skip("no final answer", r, i)
            continue
        prefixes = step_prefixes(response)
        if not prefixes:
            skip("no steps", r, i)
            continue
        if (bad := image_verdict(r.get("image_path"), image_problem)) is not None:
            skip(bad.kind, r, i, bad.detail)
            continue
        score = int(right)
        for sid, add in enumerate(prefixes, 1):
            nodes.append({"id": r["id"], "sample": r.get("sample", 0), "sid": sid, "input": r["input"],
                          "add": add, "ground_truth": r["ground_truth"], "options": r.get("options"),
                          "image_path": r.get("image_path"), "dataset": r.get("dataset") or "",
                          "score": score, "times": 1, "accuracy": float(score)})
    return nodes, skip.counts


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
    min_completion_chars: int = 30  # the original's: a completion this short (stripped) is redrawn; 0 = off
    max_redraws: int = 4  # redraws per rollout; the draw after the last redraw counts however short

    def check(self) -> None:
        """Bad settings are a DataError (a ValueError): the stage prints them as one line."""
        if self.rule not in RULES:
            raise DataError(f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        if not 1 <= self.min_rollouts <= self.max_rollouts:
            raise DataError(f"need 1 <= min_rollouts <= max_rollouts, got {self.min_rollouts}, {self.max_rollouts}")
        if self.pool < 1:
            raise DataError("pool must be at least 1")
        if self.min_completion_chars < 0 or self.max_redraws < 0:
            raise DataError("min_completion_chars and max_redraws must be at least 0")


def estimate(nodes: list[dict], backend: Backend, judge: Judge, writer: AppendWriter, s: MCSettings,
             resolve_image: Callable[[str], Path] = Path, progress: bool = True,
             last_sid: dict[tuple, int] | None = None) -> Counter:
    """Expand every node not yet in `writer`, appending each as soon as it is finished.

    Short completions (the original's rule): a completion of `min_completion_chars` characters or fewer is
    discarded and redrawn, not counted, unless the node is the last step of its response (its continuation
    is only the final answer; the original exempts sid 5). Redraw d of rollout r has its own seed
    (seed, id, sample, sid, r, d), so which draw counts does not depend on the pool or a resume; after
    `max_redraws` the last draw counts, as it does at once under greedy decoding (a redraw would repeat
    it). A node's rule is consulted again only when none of its rollouts awaits a redraw, so the labels
    equal the one-at-a-time loop's. `last_sid`: (id, sample) -> the response's highest sid, taken from the
    whole tree (a shard or a limit may hold only part of a response); default: from `nodes`.
    """
    s.check()
    rule = RULES[s.rule]
    if last_sid is None:
        last_sid = {}
        for n in nodes:
            key = (n["id"], n.get("sample", 0))
            last_sid[key] = max(last_sid.get(key, 0), n["sid"])
    todo = [n for n in nodes if not writer.done(node_key(n))]
    stats = Counter(resumed=len(nodes) - len(todo), nodes=0, completions=0, completion_chars=0, discarded=0,
                    short_counted=0)
    active: list[dict] = []
    redraw: dict[int, list[tuple[int, int]]] = {}  # id(node) -> (rollout, draw) still to draw
    nxt = 0  # next node of `todo` to take into the pool
    bar = tqdm(total=len(todo), desc="MC estimation", unit="node", disable=not progress)
    while active or nxt < len(todo):
        take = todo[nxt: nxt + s.pool - len(active)]  # refill the pool
        active += [dict(n) for n in take]
        nxt += len(take)
        requests, owners, still = [], [], []
        for node in active:
            draws = redraw.pop(id(node), None)
            if draws is None:
                k = rule(node["score"], node["times"], s.min_rollouts, s.max_rollouts)
                if k == 0:
                    writer.write(node)
                    stats["nodes"] += 1
                    bar.update(1)
                    continue
                # rollout r; r = 0 is the original response
                draws = [(r, 0) for r in range(node["times"], node["times"] + k)]
            still.append(node)
            image = str(resolve_image(node["image_path"])) if node.get("image_path") else None
            text = completion_prompt(node["input"], node["add"])
            for r, d in draws:
                seed = stable_seed(s.seed, node["id"], node.get("sample", 0), node["sid"], r, *([d] if d else []))
                requests.append(Request(text, image, node, prefix=node["add"], seed=seed))
                owners.append((node, r, d))
        active = still
        if not requests:
            continue
        texts = [o[0] for o in backend.generate(requests, 1, s.temperature, s.max_new_tokens)]
        stats["completion_chars"] += sum(map(len, texts))  # what was generated, redrawn ones too (dreamprm.plan)
        counted = []
        for (node, r, d), t in zip(owners, texts):
            short = s.min_completion_chars > 0 and len(t.strip()) <= s.min_completion_chars
            if short and node["sid"] < last_sid.get((node["id"], node.get("sample", 0)), node["sid"]):
                if d < s.max_redraws and s.temperature > 0:
                    redraw.setdefault(id(node), []).append((r, d + 1))
                    stats["discarded"] += 1
                    continue
                stats["short_counted"] += 1
            counted.append((node, t))
        verdicts = judge([JudgeItem(n["input"], final_answer_text(t), str(n["ground_truth"]), n.get("options"))
                          for n, t in counted])
        for (node, _), (ok, _) in zip(counted, verdicts):
            node["score"] += int(ok)
            node["times"] += 1
            node["accuracy"] = node["score"] / node["times"]
        stats["completions"] += len(requests)
        bar.set_postfix(completions=stats["completions"], refresh=False)
    bar.close()
    return stats

