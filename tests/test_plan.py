"""The planner's expected MC rollouts (`dreamprm/plan.py`) against the rule itself, simulated."""
import numpy as np
import pytest

from dreamprm.mc import paper_rule
from dreamprm.plan import expected_rollouts, fit_p, new_rollouts


def simulate(ps, lo=4, hi=16, seed=0):
    """Nodes run one rollout at a time under mc.paper_rule; the verdict is drawn like a completion."""
    rng = np.random.default_rng(seed)
    scores, times = [], []
    for p in ps:
        score, t = int(rng.random() < p), 1
        while (k := paper_rule(score, t, lo, hi)) > 0:
            score += int((rng.random(k) < p).sum())
            t += k
        scores.append(score)
        times.append(t)
    return np.array(scores), np.array(times)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
def test_the_closed_form_is_the_rules_mean(p):
    n = 20000
    _, times = simulate([p] * n)
    mixed = 1 - p ** 4 - (1 - p) ** 4
    se = 12 * (mixed * (1 - mixed) / n) ** 0.5  # the simulated mean's standard error
    assert float(new_rollouts(p)) == pytest.approx((times - 1).mean(), abs=4 * se + 1e-9)
    assert float(new_rollouts(p, rule="fixed")) == 3


def test_fitted_p_predicts_the_rollouts_and_plugging_in_accuracies_does_not():
    rng = np.random.default_rng(1)
    ps = rng.choice([0.97, 0.03, 0.5, 0.75], size=6000, p=[0.4, 0.3, 0.2, 0.1])
    scores, times = simulate(ps, seed=2)
    actual = (times - 1).mean()
    assert expected_rollouts(scores, times) == pytest.approx(actual, rel=0.02)
    plug_in = new_rollouts(scores / times).mean()
    assert abs(plug_in - actual) / actual > 0.05  # the bias the fit avoids
    w = fit_p(scores, times)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="score <= times"):
        fit_p([3], [2])
    with pytest.raises(ValueError, match="unknown rule"):
        new_rollouts(0.5, rule="adaptive")


# --- the planner's command line against real runs and published sizes ------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from dreamprm import plan as planner  # noqa: E402
from dreamprm.io import read_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
SIM = ["--backend", "simulated", "--policy", "world/policy.json", "--judge", "none", "--gpu", "cpu"]


def mini_world_mc(root: Path, seed: int, n_train: int) -> None:
    """The demo's generation stages on a mini world: train rollouts, the tree and the MC labels."""
    for args in (["-m", "dreamprm.miniworld.world", "--out", "world", "--n_train", str(n_train), "--n_meta", "2",
                  "--n_test", "2", "--n_step", "2"],
                 ["inference/world.py", *SIM, "--dataset", "train", "--questions", "world/data/train.jsonl",
                  "--out", "rollouts/train.jsonl", "--n", "1"],
                 ["MC/tree.py", "--responses", "rollouts/train.jsonl", "--out", "mc/tree.jsonl"],
                 ["MC/estimate.py", *SIM, "--tree", "mc/tree.jsonl", "--out", "mc/estimate.jsonl"]):
        done = subprocess.run([sys.executable, *args, "--path", str(root), "--seed", str(seed)], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pilot, target = tmp_path_factory.mktemp("pilot"), tmp_path_factory.mktemp("target")
    mini_world_mc(pilot, seed=1, n_train=10)   # a small pilot of another seed ...
    mini_world_mc(target, seed=0, n_train=50)  # ... predicts a five times larger run
    return pilot, target


def test_the_planner_predicts_a_larger_runs_generations_and_tokens_within_ten_percent(runs, tiny_models, capsys):
    pilot, target = runs
    base = ["--path", str(pilot), "--pilot_rollouts", "rollouts/train.jsonl", "--pilot_estimate", "mc/estimate.jsonl",
            "--domains", "6", "--questions_per_domain", "50"]
    by_chars = planner.main([*base, "--chars_per_token", "1"])  # one "token" per character: MC's text is measured
    by_tokens = planner.main([*base, "--tokenizer", str(tiny_models["policy"])])
    assert "MC estimation" in capsys.readouterr().out
    responses = read_records(target / "rollouts" / "train.jsonl")
    nodes = read_records(target / "mc" / "estimate.jsonl")
    generated = json.loads((target / "mc" / "estimate.jsonl.done").read_text())["generated in this run"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_models["policy"]))
    actual_tokens = sum(len(ids) for ids in tok([r["response"] for r in responses], add_special_tokens=False)["input_ids"])
    close = lambda predicted, actual: abs(predicted - actual) <= 0.10 * actual  # noqa: E731
    rollouts, mc = by_chars["stages"]["train rollouts"], by_chars["stages"]["MC estimation"]
    assert rollouts["generations"] == len(responses) == 300
    assert close(by_chars["tree_nodes"], len(nodes)), (by_chars["tree_nodes"], len(nodes))
    assert close(mc["generations"], generated["completions"]), (mc["generations"], generated)
    assert close(mc["tokens"], generated["completion_chars"]), (mc["tokens"], generated)
    assert close(by_tokens["stages"]["train rollouts"]["tokens"], actual_tokens)
    assert close(rollouts["tokens"], sum(len(r["response"]) for r in responses))


@pytest.mark.parametrize("name, published", [("Qwen/Qwen2-VL-2B-Instruct", 2.21e9),
                                             ("OpenGVLab/InternVL2_5-8B-MPO-hf", 8.08e9),
                                             ("Qwen/Qwen2.5-7B-Instruct", 7.62e9)])
def test_parameter_counts_from_the_shipped_configs_match_the_published_sizes(name, published):
    n = planner.parameters(planner.load_config(name))
    assert abs(n - published) <= 0.005e9 * max(1, published / 1e9) / 2, n  # the hub rounds to 10M


def test_memory_per_strategy_adds_up_and_shards_what_each_strategy_shards():
    args = planner.PlanArgs(world_size=4, batch_size=8)
    n = 1_000_000_000
    cfg = planner.load_config("Qwen/Qwen2-VL-2B-Instruct")
    mem = planner.memory(cfg, n, args)
    assert mem["default"]["parameters"] == 2 * n and mem["default"]["optimizer"] == 4 * n  # bf16, two Adam states
    assert mem["zero"]["optimizer"] == n and mem["zero"]["parameters"] == 2 * n
    assert mem["fsdp"]["parameters"] == n / 2 and mem["distributed"]["per_rank_batch"] == 2
    assert mem["default"]["activations"] == 4 * mem["distributed"]["activations"]
    for m in mem.values():
        assert m["total"] == pytest.approx(sum(v for k, v in m.items() if k not in ("ranks", "per_rank_batch", "total")))
    assert planner.memory(cfg, n, planner.PlanArgs(precision="fp32"))["default"]["optimizer"] == 8 * n
