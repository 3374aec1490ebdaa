"""Stages 3-6 (MC/ and inference/meta_data.py): tree, batched MC estimation, train and meta data, TRL export."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamprm import shards
from dreamprm.backends import Backend, TransformersBackend, stable_seed
from dreamprm.cli import parse_args
from dreamprm.io import BadRecord, DataError, read_records, write_jsonl
from dreamprm.judge import Judge
from dreamprm.export import to_trl
from dreamprm.mc import NODE_FIELDS, build_tree, node_key, paper_rule
from dreamprm.selection import balance, meta_rule
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


estimate_cli = load_script("MC/estimate.py")


def response(n_steps: int, answer: str) -> str:
    return "".join(f"Step {k}: part {k}.\n\n" for k in range(1, n_steps + 1)) + f"Final answer: {answer}"


@pytest.fixture
def root(tmp_path, images):
    """Policy records of two domains (with images) and a tree built from them."""
    (tmp_path / "img").mkdir()
    recs = []
    for i in range(6):
        images[i % len(images)].save(tmp_path / "img" / f"{i}.png")
        recs.append({"id": f"q{i}", "sample": 0, "response": response(2 + i % 3, "4" if i % 2 else "5"),
                     "input": f"Question {i}?", "true_false": bool(i % 2), "image_path": f"img/{i}.png",
                     "ground_truth": "4", "dataset": "chartqa" if i < 3 else "geos", "options": None})
    write_jsonl(tmp_path / "responses.jsonl", recs)
    load_script("MC/tree.py").main(["--path", str(tmp_path), "--responses", "responses.jsonl", "--out", "tree.jsonl"])
    return tmp_path


class FakePolicy(Backend):
    """Deterministic in (node, rollout seed): whether a completion is right is a coin whose bias depends on
    the question, so some nodes are always right, some never, some mixed. Can crash after some calls."""
    BIAS = {"q0": 0, "q1": 0, "q2": 50, "q3": 100, "q4": 30, "q5": 100}

    def __init__(self, crash_after=None):
        self.calls, self.crash_after, self.sizes = 0, crash_after, []

    @classmethod
    def right(cls, node, seed) -> bool:
        return stable_seed("coin", seed) % 100 < cls.BIAS[node["id"]]

    def generate(self, requests, n, temperature, max_new_tokens):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise RuntimeError("killed")
        self.sizes.append(len(requests))
        return [[f"Step 9: go on.\n\nFinal answer: {'4' if self.right(r.question, r.seed) else '7'}"] * n
                for r in requests]


def sequential(node, lo, hi, seed=42):
    """The paper's loop, one rollout at a time: the reference the batched engine must equal."""
    score, times = node["score"], node["times"]
    while (0 < score < times or times < lo) and times < hi:
        score += FakePolicy.right(node, stable_seed(seed, node["id"], node["sample"], node["sid"], times))
        times += 1
    return score, times


def estimate(root, *extra, backend=None, judge=None):
    cfg = parse_args(estimate_cli.EstimateArgs, ["--path", str(root), "--tree", "tree.jsonl", "--judge", "none",
                                                 "--policy", "unused", "--gpu", "cpu", *extra])
    return estimate_cli.run(cfg, backend=backend or FakePolicy(), judge=judge or Judge(None), progress=False)


def test_tree_has_one_node_per_step_initialised_from_the_response(root):
    tree = read_records(root / "tree.jsonl", required=NODE_FIELDS)
    assert [(n["id"], n["sid"]) for n in tree[:5]] == [("q0", 1), ("q0", 2), ("q1", 1), ("q1", 2), ("q1", 3)]
    assert len(tree) == 2 + 3 + 4 + 2 + 3 + 4
    q1 = [n for n in tree if n["id"] == "q1"]
    assert q1[0]["add"] == "Step 1: part 1.\n\n" and q1[2]["add"] == response(3, "4").split("Final")[0]
    assert all((n["score"], n["times"], n["accuracy"]) == (1, 1, 1.0) for n in q1)
    assert all(n["score"] == 0 for n in tree if n["id"] == "q0")


def test_tree_skips_are_counted_and_bad_records_named(tmp_path):
    good = {"id": 1, "response": response(2, "3"), "input": "Q", "true_false": True, "ground_truth": "3",
            "image_path": "gone.png"}
    recs = [{**good, "id": 2, "response": "no marker"}, {**good, "id": 3, "response": "Final answer: 3"},
            {**good, "id": 4}, {**good, "id": 5, "image_path": None}]
    nodes, skipped = build_tree(recs, image_problem=lambda p: BadRecord("missing image", p))
    assert skipped == {"no final answer": 1, "no steps": 1, "missing image": 1} and len(nodes) == 2
    with pytest.raises(DataError, match="record 2: true_false must be true or false"):
        build_tree([good, {**good, "id": 6, "true_false": "yes"}])
    with pytest.raises(DataError, match=r"record 2: response \(id=1, sample=0\) appears twice"):
        build_tree([good, good])
    write_jsonl(tmp_path / "r.jsonl", [good, {"id": 7, "response": "x"}])
    with pytest.raises(DataError, match=r"missing field 1 \(e\.g\. \S*r\.jsonl:2 \(input, true_false"):
        load_script("MC/tree.py").main(["--path", str(tmp_path), "--responses", "r.jsonl"])


@pytest.mark.parametrize("pool", [1, 5, 100])
def test_batched_estimation_equals_the_one_at_a_time_rule(root, pool):
    backend = FakePolicy()
    stats = estimate(root, "--min_rollouts", "4", "--max_rollouts", "9", "--pool", str(pool), backend=backend)
    got = read_records(root / "runs" / "mc" / "estimate.jsonl", required=NODE_FIELDS)
    tree = read_records(root / "tree.jsonl")
    assert [node_key(n) for n in got] == [node_key(n) for n in tree]  # every node once, in tree order
    for n, t in zip(got, tree):
        assert (n["score"], n["times"]) == sequential(t, 4, 9) and n["accuracy"] == n["score"] / n["times"]
    times = {n["times"] for n in got}
    assert times == {4, 9}  # the rule really ran: unanimous nodes stop at the minimum, mixed ones at the cap
    assert any(0 < n["accuracy"] < 1 for n in got) and any(n["accuracy"] in (0, 1) for n in got)
    assert stats["completions"] == sum(n["times"] - 1 for n in got)
    if pool == 100:  # the whole tree in flight: one call for the first 3 rollouts, one for the rest
        assert backend.calls == 2 and backend.sizes[0] == 3 * len(tree)


def test_rules_and_cap_are_configurable(root):
    estimate(root, "--rule", "fixed", "--min_rollouts", "3", "--max_rollouts", "3")
    assert {n["times"] for n in read_records(root / "runs" / "mc" / "estimate.jsonl")} == {3}
    assert paper_rule(4, 4, 4, 16) == paper_rule(0, 4, 4, 16) == paper_rule(3, 16, 4, 16) == 0
    assert paper_rule(1, 2, 4, 16) == 2 and paper_rule(2, 5, 4, 16) == 11
    with pytest.raises(ValueError, match="min_rollouts <= max_rollouts"):
        estimate(root, "--min_rollouts", "5", "--max_rollouts", "4", "--resume")


class ShortPolicy(FakePolicy):
    """FakePolicy whose completion is, for `pct` percent of the seeds, a bare "Final answer: x" (15 characters)."""

    def __init__(self, pct=40):
        super().__init__()
        self.pct = pct

    @staticmethod
    def text(node, seed, pct) -> str:
        answer = "4" if FakePolicy.right(node, seed) else "7"
        if stable_seed("short", seed) % 100 < pct:
            return f"Final answer: {answer}"
        return f"Step 9: go on with the reasoning.\n\nFinal answer: {answer}"

    def generate(self, requests, n, temperature, max_new_tokens):
        self.sizes.append(len(requests))
        return [[self.text(r.question, r.seed, self.pct)] * n for r in requests]


def sequential_short(node, last, lo, hi, pct, chars=30, cap=4, seed=42):
    """The paper's loop with the short-completion rule, one draw at a time: (score, times, discarded, exempt)."""
    score, times, discarded, exempt = node["score"], node["times"], 0, 0
    while (0 < score < times or times < lo) and times < hi:
        for d in range(cap + 1):
            text = ShortPolicy.text(node, stable_seed(seed, node["id"], node["sample"], node["sid"], times,
                                                      *([d] if d else [])), pct)
            if len(text) > chars or d == cap:
                break
            if node["sid"] == last:
                exempt += 1
                break
            discarded += 1
        score += text.endswith("4")
        times += 1
    return score, times, discarded, exempt


def last_sids(tree):
    return {n["id"]: max(m["sid"] for m in tree if m["id"] == n["id"]) for n in tree}


@pytest.mark.parametrize("pool", [1, 64])
def test_short_completions_are_redrawn_not_counted_and_the_last_step_is_exempt(root, pool):
    stats = estimate(root, "--max_rollouts", "8", "--pool", str(pool), "--out", f"short{pool}.jsonl",
                     backend=ShortPolicy())
    got, tree = read_records(root / f"short{pool}.jsonl"), read_records(root / "tree.jsonl")
    last = last_sids(tree)
    want = [sequential_short(t, last[t["id"]], 4, 8, 40) for t in tree]
    assert [(n["score"], n["times"]) for n in got] == [w[:2] for w in want]
    assert stats["discarded"] == sum(w[2] for w in want) > 0
    assert sum(w[3] for w in want) > 0  # short completions at a last step were counted, not redrawn
    assert stats["completions"] == sum(n["times"] - 1 for n in got) + stats["discarded"]
    # identical whatever the pool: the file of pool 1 equals the file of pool 64
    if pool == 64:
        estimate(root, "--max_rollouts", "8", "--pool", "1", "--out", "short1.jsonl", backend=ShortPolicy())
        assert (root / "short1.jsonl").read_bytes() == (root / "short64.jsonl").read_bytes()


def test_after_the_redraw_cap_the_short_draw_counts(root):
    stats = estimate(root, "--max_rollouts", "6", "--max_redraws", "2", backend=ShortPolicy(pct=100))
    got, last = read_records(root / "runs" / "mc" / "estimate.jsonl"), last_sids(read_records(root / "tree.jsonl"))
    inner = sum(n["times"] - 1 for n in got if n["sid"] < last[n["id"]])
    assert inner > 0 and stats["short_counted"] == inner and stats["discarded"] == 2 * inner
    assert stats["completions"] == sum(n["times"] - 1 for n in got) + stats["discarded"]


def test_the_short_completion_rule_can_be_turned_off_and_is_moot_when_greedy(root):
    stats = estimate(root, "--max_rollouts", "8", "--min_completion_chars", "0", backend=ShortPolicy())
    got, tree = read_records(root / "runs" / "mc" / "estimate.jsonl"), read_records(root / "tree.jsonl")
    want = [sequential_short(t, 0, 4, 8, 40, cap=0) for t in tree]  # every first draw counts
    assert [(n["score"], n["times"]) for n in got] == [w[:2] for w in want]
    assert stats["discarded"] == stats["short_counted"] == 0
    # greedy decoding would draw the same text again: a short completion counts at once
    stats = estimate(root, "--max_rollouts", "8", "--temperature", "0", "--out", "greedy.jsonl",
                     backend=ShortPolicy(pct=100))
    assert stats["discarded"] == 0 < stats["short_counted"]


def test_a_completion_prompt_file_reaches_the_policy(root):
    class Recorder(FakePolicy):
        def generate(self, requests, n, temperature, max_new_tokens):
            self.texts = getattr(self, "texts", []) + [r.text for r in requests]
            return super().generate(requests, n, temperature, max_new_tokens)

    (root / "p").mkdir()
    (root / "p" / "completion.txt").write_text("Go on {{prefix}}: {question} | {prefix}\n")
    backend = Recorder()
    try:
        estimate(root, "--prompts_dir", "p", "--max_rollouts", "4", backend=backend)
    finally:
        from dreamprm import prompts
        prompts.load_templates()
    assert backend.texts[0] == "Go on {prefix}: Question 0? | Step 1: part 1.\n\n"


def test_estimation_resumes_after_a_crash_and_shards_merge(root):
    estimate(root, "--out", "full.jsonl", "--max_rollouts", "8")
    with pytest.raises(RuntimeError, match="killed"):
        estimate(root, "--out", "part.jsonl", "--max_rollouts", "8", "--pool", "3", backend=FakePolicy(crash_after=3))
    part = read_records(root / "part.jsonl")
    assert 0 < len(part) < 18
    stats = estimate(root, "--out", "part.jsonl", "--max_rollouts", "8", "--pool", "3", "--resume")
    assert stats["resumed"] == len(part)
    assert (root / "part.jsonl").read_bytes() == (root / "full.jsonl").read_bytes()
    for i in range(2):
        estimate(root, "--out", "two.jsonl", "--max_rollouts", "8", "--shard", f"{i}/2")
    shards.merge(root / "two.jsonl")
    assert (root / "two.jsonl").read_bytes() == (root / "full.jsonl").read_bytes()


def test_nodes_whose_image_vanished_are_skipped_and_counted(root):
    (root / "img" / "1.png").unlink()
    stats = estimate(root, "--max_skip_fraction", "0.2")
    assert stats["skipped"]["kinds"]["missing image"]["count"] == 3 and stats["records"] == 15
    assert stats["skipped"]["kinds"]["missing image"]["first"][0].startswith(f"{root / 'tree.jsonl'}:3 ")


def test_bad_tree_input_is_named(root):
    (root / "tree.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(DataError, match=r"tree\.jsonl:1 \(sid, input"):
        estimate(root)
    (root / "tree.jsonl").write_text("")
    with pytest.raises(DataError, match="empty file"):
        estimate(root)


def test_sigkill_midway_then_resume_equals_an_uninterrupted_run(root, tiny_models):
    args = ["--policy", str(tiny_models["policy"]), "--temperature", "0", "--max_new_tokens", "4",
            "--min_rollouts", "2", "--max_rollouts", "3", "--pool", "1", "--batch_size", "4", "--precision", "fp32"]
    out = root / "killed.jsonl"
    cmd = [sys.executable, str(ROOT / "MC" / "estimate.py"), "--path", str(root), "--tree", "tree.jsonl",
           "--out", out.name, "--judge", "none", "--gpu", "cpu", *args]
    log = open(root / "killed.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log, stderr=log)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    ended = (root / "killed.log").read_text()[-2000:]
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{ended}"
    n_before = out.read_text().count("\n")
    assert 3 <= n_before < 18

    backend = TransformersBackend(str(tiny_models["policy"]), "cpu", "fp32", batch_size=4)
    stats = estimate(root, "--out", out.name, "--resume", *args, backend=backend)
    estimate(root, "--out", "uninterrupted.jsonl", *args, backend=backend)
    assert stats["resumed"] == n_before
    killed, full = read_records(out), read_records(root / "uninterrupted.jsonl")
    assert [node_key(n) for n in killed] == [node_key(n) for n in full] and len(full) == 18
    assert [(n["score"], n["times"]) for n in killed] == [(n["score"], n["times"]) for n in full]


def test_train_data_balancing_rule():
    def nodes(domain, accs):
        return [{"id": f"{domain}{i}", "sid": 1, "dataset": domain, "accuracy": a} for i, a in enumerate(accs)]

    a = nodes("chartqa", [0.5, 0, 0, 1, 0.25, 0, 0, 0, 0.75, 0])   # 3 mixed, 6 zeros, 1 one
    b = nodes("geos", [0, 1, 0, 1, 0, 1, 0, 1])                    # 4 zeros, 4 ones
    c = nodes("ai2d", [0.5, 0.5, 0.5, 0.5, 0.5, 1, 0])             # more mixed than the cap
    d = nodes("iconqa", [1, 1, 1])                                  # fewer than the cap
    got, stats = balance(a + b + c + d, cap=6, seed=1)
    assert got == sorted(got, key=(a + b + c + d).index)  # input order kept
    kinds = {dom: [("m" if 0 < n["accuracy"] < 1 else str(n["accuracy"])) for n in got if n["dataset"] == dom]
             for dom in ("chartqa", "geos", "ai2d", "iconqa")}
    # chartqa: 3 mixed, then 1 zero + 1 one (room 3 -> 1 pair), then 1 of the leftover 4 zeros
    assert sorted(kinds["chartqa"]) == ["0", "0", "1", "m", "m", "m"]
    assert sorted(kinds["geos"]) == ["0"] * 3 + ["1"] * 3
    assert kinds["ai2d"] == ["m"] * 5 + [kinds["ai2d"][-1]] and len(kinds["ai2d"]) == 6
    assert kinds["iconqa"] == ["1", "1", "1"]
    assert stats["chartqa"]["selected mixed"] == 3 and stats["chartqa"]["available 0"] == 6
    assert balance(a + b + c + d, cap=6, seed=1)[0] == got  # seeded
    assert len(balance(nodes("geos", [0.5] * 9), cap=4, seed=2)[0]) == 4


def test_meta_data_rule():
    def r(qid, sample, ok, resp=None):
        return {"id": qid, "sample": sample, "true_false": ok, "input": f"Q{qid}?",
                "response": resp if resp is not None else response(2, "x"), "image_path": f"{qid}.png"}

    recs = [r(1, 0, True), r(1, 1, False), r(1, 2, True), r(1, 3, False),          # disagree -> samples 0 and 1
            r(2, 0, False, "no marker"), r(2, 1, True), r(2, 2, True),            # always right (one unusable)
            r(3, 0, False), r(3, 1, False),                                        # always wrong
            r(4, 0, True, "Final answer: 3"), r(4, 1, False),                     # stepless right skipped -> wrong
            r(5, 0, True, "nothing"),                                              # nothing usable
            r(6, 1, False), r(6, 0, True)]                                          # disagree, order by sample
    meta, stats = meta_rule(recs, per_kind=10, seed=0)
    assert [(m["id"], m["sample"], m["true_false"]) for m in meta] == [
        (1, 0, True), (1, 1, False), (2, 1, True), (3, 0, False), (4, 1, False), (6, 0, True), (6, 1, False)]
    assert meta[0] == {"id": 1, "sample": 0, "true_false": True, "input": "Q1?\n\n" + response(2, "x"),
                       "image_path": "1.png"}
    assert stats["skipped responses: no final answer"] == 2 and stats["skipped responses: no steps"] == 1
    assert stats["questions without a usable response"] == 1 and (stats["true"], stats["false"]) == (3, 4)
    # the paper's exact rule keeps the stepless response; the caps bound the agreeing questions
    assert (4, 0, True) in [(m["id"], m["sample"], m["true_false"]) for m in meta_rule(recs, 10, 0, False)[0]]
    capped, _ = meta_rule(recs, per_kind=0, seed=0)
    assert [m["id"] for m in capped] == [1, 1, 6, 6]


def test_meta_data_cli_and_bad_input(tmp_path):
    recs = [{"id": q, "sample": s, "true_false": (q + s) % 3 == 0, "input": "Q", "response": response(2, "1"),
             "image_path": None} for q in range(6) for s in range(4)]
    write_jsonl(tmp_path / "mmmu.jsonl", recs)
    meta, stats = load_script("inference/meta_data.py").main(["--path", str(tmp_path), "--responses", "mmmu.jsonl"])
    assert read_records(tmp_path / "runs" / "meta" / "meta.jsonl") == meta and stats["records"] == len(meta) > 0
    (tmp_path / "bad.jsonl").write_text(json.dumps(recs[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"malformed JSON 1 \(e\.g\. \S*bad\.jsonl:2 "):
        load_script("inference/meta_data.py").main(["--path", str(tmp_path), "--responses", "bad.jsonl",
                                                    "--out", "m2.jsonl"])


def test_the_released_rollout_layout_feeds_tree_and_meta_data(tmp_path):
    """The authors' rollouts: one JSON array per rollout index (0.json .. 3.json), records {id, response, input,
    true_false} without `sample`, labels as JSON bools or hand-written "true"/"false" strings."""
    d = tmp_path / "inference/results/MMMU/InternVL-MPO"
    d.mkdir(parents=True)
    for k in range(4):  # question 0: right in files 1 and 3 only; 1: always right; 2: always wrong
        recs = [{"id": q, "response": response(2, "A"), "input": f"Question: q{q}?\nOptions: (A) 1 (B) 2",
                 "true_false": ok, "ground_truth": "A", "image_path": None}
                for q, ok in ((0, k % 2 == 1), (1, "true"), (2, "False"))]
        (d / f"{k}.json").write_text(json.dumps(recs, indent=4))
    meta, stats = load_script("inference/meta_data.py").main(
        ["--path", str(tmp_path), "--responses", "inference/results/MMMU/InternVL-MPO/*.json"])
    assert [(m["id"], m["sample"], m["true_false"]) for m in meta] == [(0, 1, True), (0, 0, False), (1, 0, True),
                                                                        (2, 0, False)]
    nodes, _ = load_script("MC/tree.py").main(["--path", str(tmp_path), "--responses",
                                               "inference/results/MMMU/InternVL-MPO/*.json"])
    assert len(nodes) == 3 * 4 * 2 and {n["sample"] for n in nodes} == {0, 1, 2, 3}
    assert [n["score"] for n in nodes if n["id"] == 1] == [1] * 8


def test_train_data_cli_and_trl_export(root):
    estimate(root, "--max_rollouts", "6")
    train, summary = load_script("MC/train_data.py").main(["--path", str(root), "--per_domain", "5"])
    assert len(train) == 10 and set(summary["per_domain"]) == {"chartqa", "geos"}
    assert shards.read_marker(root / "runs" / "mc" / "train.jsonl") == summary and summary["records"] == 10
    assert all(set(NODE_FIELDS) <= set(t) for t in read_records(root / "runs" / "mc" / "train.jsonl"))
    ids = [t["instance"] for t in train]  # the keys of --reweight instance_table
    assert len(set(ids)) == 10 and ids[0] == f"{train[0]['id']}-{train[0].get('sample', 0)}-{train[0]['sid']}"
    rows = load_script("MC/export_trl.py").main(["--path", str(root)])
    assert len(rows) == 6 and rows[1]["prompt"] == "Question 1?"
    assert rows[1]["completions"] == ["Step 1: part 1.", "Step 2: part 2.", "Step 3: part 3."]
    assert all(isinstance(x, bool) for x in rows[1]["labels"]) and len(rows[1]["labels"]) == 3
    hard, skipped = to_trl([n for n in read_records(root / "runs" / "mc" / "estimate.jsonl")
                            if (n["id"], n["sid"]) != ("q1", 2)], threshold=0.0)
    assert [len(r["labels"]) for r in hard][:2] == [2, 1] and all(isinstance(x, bool) for x in hard[0]["labels"])
    assert skipped == {"responses cut at a missing or inconsistent step": 1}
