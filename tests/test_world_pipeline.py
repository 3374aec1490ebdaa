"""The whole pipeline on a SMALL CPU mini world through scripts/demo.sh (the README's first command).

Few questions and few iterations: checks that every stage ran and wrote valid output and that the results page
holds its tables, the step-level section and the intervals. The claims themselves need the full run
(benchmarks/world_claims.py).
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from dreamprm.data import RECORD_KEYS
from dreamprm.io import read_records
from dreamprm.mc import NODE_FIELDS

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"DEMO_N_TRAIN": "5", "DEMO_N_META": "8", "DEMO_N_TEST": "4", "DEMO_N_STEP": "40", "DEMO_ITERATIONS": "6",
         "DEMO_WARMUP": "4", "DEMO_TRAIN_BATCH": "2", "DEMO_META_BATCH": "2", "DEMO_SEED": "1"}
N_STEP = 40
STEP_KEYS = ("id", "input", "ground_truth", "image_path", "dataset", "steps", "labels", "policy_model")
# The seeded uniform scorer's macro-F1 on N_STEP solutions (5 steps each, ~65% of them correct): expected ~48.4
# (p / (p + 1/2) and (1 - p) / (3/2 - p) averaged, below 50 for unbalanced labels), standard deviation ~3.6
# (simulated: 20000 draws of uniform scores on labels like the world's). 12 points around 50 is >3 standard
# deviations from 48.4 on either side: a uniform scorer passes (its draw is seeded, so the test is deterministic),
# a scorer that reads the labels or the step position does not.
RANDOM_TOL = 12.0
TRAIN_DOMAINS = {"counting", "bars", "wordproblem", "arithmetic", "geometry", "clocks"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    env = dict(os.environ, DEMO_OUT=str(out), OMP_NUM_THREADS="1", **SMALL)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


def test_world_rollouts_and_mc(run):
    out, _ = run
    world = json.loads((out / "world" / "world.json").read_text())
    assert {d["name"] for d in world["domains"] if d["role"] == "train"} == TRAIN_DOMAINS
    assert world["seed"] == 1 and world["n_train"] == 5
    train_q = read_records(out / "world" / "data" / "train.jsonl", required=RECORD_KEYS)
    assert len(train_q) == 5 * len(TRAIN_DOMAINS)
    responses = read_records(out / "rollouts" / "train.jsonl", required=("id", "response", "input", "true_false"))
    assert len(responses) == len(train_q) and (out / "rollouts" / "train.jsonl.done").exists()
    tree = read_records(out / "mc" / "tree.jsonl", required=NODE_FIELDS)
    labelled = read_records(out / "mc" / "estimate.jsonl", required=NODE_FIELDS)
    assert len(labelled) == len(tree) > 0
    assert all(0 <= x["accuracy"] <= 1 and x["times"] >= 4 for x in labelled)
    train = read_records(out / "mc" / "train.jsonl", required=("input", "add", "image_path", "dataset", "accuracy"))
    assert {x["dataset"] for x in train} == TRAIN_DOMAINS
    meta_resp = read_records(out / "rollouts" / "meta.jsonl")
    assert len(meta_resp) == 4 * 8
    meta = read_records(out / "meta" / "meta.jsonl", required=("true_false", "input", "image_path"))
    assert meta and all("Step 1" in m["input"] for m in meta)
    # the ORM's train data: every train response (each has a final answer here), labelled by its correctness
    orm = read_records(out / "mc" / "orm_train.jsonl", required=("input", "add", "image_path", "dataset", "accuracy"))
    assert [(x["add"], x["accuracy"]) for x in orm] == [(r["response"], float(r["true_false"])) for r in responses]


def test_training_outputs(run):
    out, _ = run
    for name in ("reweighting", "vanilla"):
        d = out / name
        assert (d / "prm" / "prm_head.pt").is_file(), name
        summary = json.loads((d / "summary.json").read_text())
        weights = json.loads((d / "domain_weights.json").read_text())
        assert set(weights) == TRAIN_DOMAINS
        assert abs(sum(weights.values()) / len(weights) - 1) < 1e-4
        log = [json.loads(ln) for ln in (d / "log.jsonl").read_text().splitlines()]
        assert log and summary["iterations"] == log[-1]["iteration"]
    assert set(json.loads((out / "vanilla" / "domain_weights.json").read_text()).values()) == {1.0}
    orm = json.loads((out / "orm" / "summary.json").read_text())  # the ORM: one sample per train response
    assert (out / "orm" / "prm" / "prm_head.pt").is_file() and orm["iterations"] == 4 + 6
    assert orm["train_samples"] == 5 * len(TRAIN_DOMAINS) and set(orm["weights"].values()) == {1.0}
    assert json.loads((out / "orm" / "prm" / "prm_config.json").read_text())["input_format"] == "paper"
    assert (out / "figs" / "domain_weights.png").is_file()


def test_bon_tables_and_results_page(run):
    out, _ = run
    for name in ("dreamprm", "vanilla"):
        res = json.loads((out / "bon" / name / "results.json").read_text())
        assert set(res["benchmarks"]) == {"bench_a", "bench_b"}
        for b, r in res["benchmarks"].items():
            assert r["total"] == 4 and r["scored"]
            for m in ("prm:mean_log_odds", "random", "self_consistency", "oracle"):
                assert 0 <= r["accuracy"][m]["8"] <= 100
        scores = read_records(out / "bon" / name / "bench_a.scores.jsonl")
        assert len(scores) == 4 and all(len(q["candidates"]) == 8 for q in scores)
    for b in ("bench_a", "bench_b"):
        assert len(read_records(out / "rollouts" / f"{b}.jsonl")) == 4 * 8
    # the ORM: one score per candidate, its own method, and Table 1's ORM row; the last-step proxy labelled apart
    orm = json.loads((out / "bon" / "orm" / "results.json").read_text())
    assert orm["unit"] == "response" and set(orm["benchmarks"]) == {"bench_a", "bench_b"}
    assert all("orm" in r["accuracy"] and "prm:mean_log_odds" not in r["accuracy"] for r in orm["benchmarks"].values())
    scores = read_records(out / "bon" / "orm" / "bench_a.scores.jsonl")
    assert len(scores) == 4 and all(len(c["scores"]) == 1 for q in scores for c in q["candidates"])
    table = {r.split(" | ")[0].strip("| "): r for r in (out / "bon" / "tables" / "table1.md").read_text().splitlines()
             if r.startswith("| ")}
    cell = lambda x: f"{x:.1f}"  # noqa: E731
    a, b = (orm["benchmarks"][k]["accuracy"]["orm"]["8"] for k in ("bench_a", "bench_b"))
    assert table["ORM"].startswith(f"| ORM | {cell(a)} (—) | {cell(b)} (—) |")
    dream = json.loads((out / "bon" / "dreamprm" / "results.json").read_text())
    last = dream["benchmarks"]["bench_a"]["accuracy"]["prm:last"]["8"]
    assert table["ORM proxy: DreamPRM last-step score (ablation)"].startswith(
        f"| ORM proxy: DreamPRM last-step score (ablation) | {cell(last)} (—)")
    assert (out / "figs" / "bon_scaling.png").is_file() and (out / "figs" / "weights_vs_quality.png").is_file()

    page = (out / "RESULTS.md").read_text()
    for heading in ("Learned domain weights against the known domain quality", "Best-of-8 accuracy",
                    "The claims", "MC labels"):
        assert heading in page
    for method in ("DreamPRM", "Vanilla PRM", "ORM |", "ORM proxy: DreamPRM last-step score (ablation)",
                   "Self-consistency", "Random pick", "Oracle"):
        assert f"| {method}" in page
    for d in TRAIN_DOMAINS:
        assert f"| {d} |" in page
    res = json.loads((out / "results.json").read_text())
    assert res["spearman"] is not None and -1 <= res["spearman"] <= 1
    assert set(res["bon"]) == {"bench_a", "bench_b"}
    # every number on the page comes from the files: the DreamPRM cell is BoN/pick.py's number
    pick = json.loads((out / "bon" / "dreamprm" / "results.json").read_text())
    assert res["bon"]["bench_a"]["DreamPRM"] == pick["benchmarks"]["bench_a"]["accuracy"]["prm:mean_log_odds"]["8"]
    assert res["bon"]["bench_b"]["ORM"] == b and res["orm"] == {"iterations": 10, "train_samples": 30}


def test_step_set_and_step_eval(run):
    out, _ = run
    steps = read_records(out / "world" / "steps" / "stepbench.jsonl", required=STEP_KEYS)
    assert len(steps) == N_STEP and all(r["dataset"] == "stepbench" and len(r["steps"]) == len(r["labels"]) == 5
                                        for r in steps)
    assert all(set(r["labels"]) <= {1, -1} for r in steps)
    ids = {r["id"] for r in steps}
    train = {r["id"] for r in read_records(out / "world" / "data" / "train.jsonl")}
    meta = {r["id"] for r in read_records(out / "world" / "data" / "meta.jsonl")}
    assert not {i.rsplit(":", 1)[0] for i in ids} & (train | meta)  # held out
    for name in ("dreamprm", "vanilla", "random"):
        scores = read_records(out / "stepeval" / name / "stepbench.scores.jsonl", required=("id", "scores", "prm"))
        assert {r["id"] for r in scores} == ids and all(0 <= x <= 1 for r in scores for x in r["scores"])
        metrics = json.loads((out / "stepeval" / name / "stepbench.metrics.json").read_text())
        assert metrics["n_solutions"] == N_STEP


def test_results_page_step_level_and_intervals(run):
    out, _ = run
    res = json.loads((out / "results.json").read_text())
    sl = res["step_level"]["stepbench"]
    assert sl["n_solutions"] == N_STEP and sl["threshold"] == 0.5 and sl["left_out"] == 0
    assert sl["n_steps"]["correct"] + sl["n_steps"]["incorrect"] == 5 * N_STEP and sl["n_steps"]["neutral"] == 0
    assert set(sl["prms"]) == {"DreamPRM", "Vanilla PRM", "Random"}
    for label, m in sl["prms"].items():
        metrics = json.loads((out / "stepeval" / {"DreamPRM": "dreamprm", "Vanilla PRM": "vanilla",
                                                  "Random": "random"}[label] / "stepbench.metrics.json").read_text())
        assert m["macro_f1"] == metrics["overall"]["macro_f1"]  # the page's numbers are step_eval's
        for k in ("macro_f1", "f1_correct", "f1_incorrect"):
            assert 0 <= m[k] <= 100, (label, k)
        assert 0 <= m["heldout"]["macro_f1"] <= 100 and len(m["heldout"]["thresholds"]) == 2
        assert 0 <= m["auroc"] <= 1
        assert set(m["first_error"]) == {"acc_erroneous", "acc_correct", "f1"}
        assert all(v is None or 0 <= v <= 100 for v in m["first_error"].values())
    assert abs(sl["prms"]["Random"]["macro_f1"] - 50) < RANDOM_TOL

    iv = res["intervals"]
    bon = iv["DreamPRM - Vanilla PRM"]
    assert set(bon) == {"bench_a", "bench_b", "pooled"}
    assert [bon[b]["n"] for b in ("bench_a", "bench_b", "pooled")] == [4, 4, 8]
    for b in ("bench_a", "bench_b"):  # the difference is the one of the BoN table
        assert abs(bon[b]["diff"] - (res["bon"][b]["DreamPRM"] - res["bon"][b]["Vanilla PRM"])) < 1e-9
    step = iv["step_macro_f1"]["DreamPRM - Vanilla PRM"]
    assert set(step) == {"stepbench", "pooled"} and step["stepbench"]["n"] == N_STEP
    f1 = {k: m["macro_f1"] for k, m in sl["prms"].items()}  # the confusion counts give step_eval's macro-F1
    assert abs(step["stepbench"]["diff"] - (f1["DreamPRM"] - f1["Vanilla PRM"])) < 1e-9
    cis = [ci for k, v in iv.items() if k not in ("step_macro_f1", "about") for ci in v.values()]  # BoN pairs
    cis += [ci for v in iv["step_macro_f1"].values() for ci in v.values()]
    assert len(cis) >= 8
    for ci in cis:
        assert ci["lo"] <= ci["diff"] <= ci["hi"] and ci["holds"] == (ci["lo"] > 0)
        assert ci["n_boot"] == iv["about"]["n_boot"] and ci["level"] == 0.95
    claims = res["claims"]["dreamprm_beats_vanilla_interval"]
    assert claims["bon"] == {b: ci["holds"] for b, ci in bon.items()}
    assert claims["step_macro_f1"] == {g: ci["holds"] for g, ci in step.items()}

    page = (out / "RESULTS.md").read_text()
    for heading in ("## Step-level evaluation on `stepbench`", "## The differences with 95% intervals"):
        assert heading in page
    assert "![step scores](figs/step_scores.png)" in page and (out / "figs" / "step_scores.png").is_file()
    assert "| Random |" in page and "| DreamPRM - Vanilla PRM |" in page
    assert "3. DreamPRM beats the vanilla PRM in BoN accuracy" in page
