"""benchmarks/world_claims.py's summary on small fabricated seed runs (no demo is run: --reuse)."""
import json
import sys

import numpy as np
import pytest

from conftest import load_script

BENCHES = ("bench_a", "bench_b")
N_Q = 40


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def fake_seed(run, seed, gap):
    """A seed run: DreamPRM right on `gap` more questions per benchmark than the vanilla PRM."""
    rng = np.random.default_rng(seed)
    bon = {}
    for b in BENCHES:
        right = rng.random((N_Q, 8)) < 0.5  # candidates' correctness
        write_jsonl(run / "rollouts" / f"{b}.jsonl", [
            {"id": f"{b}-{q}", "sample": s, "input": "?", "response": "Step 1: x", "true_false": bool(right[q, s])}
            for q in range(N_Q) for s in range(8)])
        van = rng.random(N_Q) < 0.4
        dream = van.copy()
        dream[np.flatnonzero(~van)[:gap]] = True
        accs = {}
        for name, ok in (("dreamprm", dream), ("vanilla", van)):
            write_jsonl(run / "bon" / name / f"{b}.selected.jsonl", [
                {"id": f"{b}-{q}", "dataset": b, "method": "prm:mean_log_odds", "sample": 0,
                 "true_false": bool(ok[q]), "picks": {"self_consistency": 0}} for q in range(N_Q)])
            accs[name] = 100 * ok.mean()
        bon[b] = {"DreamPRM": accs["dreamprm"], "Vanilla PRM": accs["vanilla"],
                  "Random pick": 100 * right.mean(), "Oracle (pass@N)": 100 * right.any(1).mean()}
    for name in ("dreamprm", "vanilla"):
        (run / "bon" / name / "results.json").write_text(json.dumps(
            {"run": name, "aggregation": "mean_log_odds", "n": [1, 8],
             "benchmarks": {b: {"total": N_Q, "accuracy": {}} for b in BENCHES}}))
    (run / "results.json").write_text(json.dumps({
        "spearman": 0.9, "max_corrupted_weight": 0.5,
        "domains": [{"name": "d1", "quality": 1.0, "weight": 1.2}, {"name": "d2", "quality": 0.6, "weight": 0.5}],
        "bon": bon, "claims": {"weights_follow_quality": True,
                               "dreamprm_gt_vanilla_gt_random": {b: True for b in BENCHES}}}))


def test_intervals_over_fabricated_seeds(tmp_path, capsys):
    wc = load_script("benchmarks/world_claims.py")
    fake_seed(tmp_path / "seed-0", 0, gap=10)
    fake_seed(tmp_path / "seed-1", 1, gap=0)
    s = wc.main(["--seeds", "0,1", "--out", str(tmp_path), "--reuse", "--n_boot", "2000"])
    assert "warning" not in capsys.readouterr().out  # the files give the accuracy results.json reports
    iv = s["intervals"]["pairs"]["DreamPRM - Vanilla PRM"]
    one = iv["per_seed"][0]
    assert one["bench_a"]["diff"] == pytest.approx(25.0) and one["pooled"]["n"] == 2 * N_Q
    assert one["pooled"]["lo"] > 0 and one["source"] == "bon files"
    assert iv["per_seed"][1]["pooled"] == dict(iv["per_seed"][1]["pooled"], diff=0.0, lo=0.0, hi=0.0)
    assert iv["over_seeds"]["pooled"]["n"] == 4 * N_Q and iv["seeds_pooled"] == [0, 1]
    assert iv["over_seeds"]["pooled"]["diff"] == pytest.approx(12.5)
    c3 = s["claims"]["3_dreamprm_beats_vanilla_interval"]
    assert c3["per_seed"] == {0: True, 1: False} and c3["pooled_over_seeds"] is True
    # vanilla vs random pick: the random expectation is read from the candidates
    rnd = s["intervals"]["pairs"]["Vanilla PRM - Random pick"]["per_seed"][0]["bench_a"]
    res = json.loads((tmp_path / "seed-0" / "results.json").read_text())["bon"]["bench_a"]
    assert rnd["diff"] == pytest.approx(res["Vanilla PRM"] - res["Random pick"])
    assert "DreamPRM - ORM" not in s["intervals"]["pairs"]  # no ORM run in these seeds
    md = (tmp_path / "CLAIMS.md").read_text()
    assert "Claim 3" in md and "1/2 seeds" in md and "pooled over seeds **holds**" in md
    assert "| all seeds (160 questions) |" in md
    saved = json.loads((tmp_path / "claims.json").read_text())
    assert saved["claims"]["3_dreamprm_beats_vanilla_interval"]["per_seed"] == {"0": True, "1": False}


def test_a_seed_without_selected_files_uses_its_results_json(tmp_path):
    wc = load_script("benchmarks/world_claims.py")
    fake_seed(tmp_path / "seed-0", 0, gap=10)
    fake_seed(tmp_path / "seed-1", 1, gap=10)
    for name in ("dreamprm", "vanilla"):
        for b in BENCHES:
            (tmp_path / "seed-1" / "bon" / name / f"{b}.selected.jsonl").unlink()
    r = json.loads((tmp_path / "seed-1" / "results.json").read_text())
    r["intervals"] = {"DreamPRM - Vanilla PRM": {"pooled": {"diff": 5.0, "lo": -1.0, "hi": 11.0, "n": 80}}}
    (tmp_path / "seed-1" / "results.json").write_text(json.dumps(r))
    s = wc.main(["--seeds", "0,1", "--out", str(tmp_path), "--reuse", "--n_boot", "500"])
    iv = s["intervals"]["pairs"]["DreamPRM - Vanilla PRM"]
    assert iv["per_seed"][1]["source"] == "results.json" and iv["per_seed"][1]["pooled"]["lo"] == -1.0
    assert iv["seeds_pooled"] == [0] and iv["over_seeds"]["pooled"]["n"] == 2 * N_Q
    assert s["claims"]["3_dreamprm_beats_vanilla_interval"]["per_seed"] == {0: True, 1: False}
    assert "seed 1 (results.json)" in (tmp_path / "CLAIMS.md").read_text()


def test_step_level_from_score_files(tmp_path):
    stepeval = pytest.importorskip("dreamprm.stepeval")
    wc = load_script("benchmarks/world_claims.py")
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        run = tmp_path / f"seed-{seed}"
        fake_seed(run, seed, gap=5)
        labels = [rng.choice([1, 1, 0, -1], size=4).tolist() for _ in range(30)]
        # seed 0: the step set where the world writes it; seed 1: elsewhere, named by the metrics file
        steps = run / "world" / "steps" / "stepbench.jsonl" if seed == 0 else tmp_path / "elsewhere.jsonl"
        write_jsonl(steps, [
            {"id": f"s{i}", "input": "?", "ground_truth": "1", "image_path": None, "dataset": "stepbench",
             "steps": ["a"] * 4, "labels": l, "policy_model": None} for i, l in enumerate(labels)])
        for name, noise in (("dreamprm", 0.2), ("vanilla", 0.6)):  # DreamPRM's scores follow the labels closely
            write_jsonl(run / "stepeval" / name / "stepbench.scores.jsonl", [
                {"id": f"s{i}", "dataset": "stepbench", "prm": name,
                 "scores": [float(np.clip((x >= 0) * 0.8 + 0.1 + rng.normal(0, noise), 0, 1)) for x in l]}
                for i, l in enumerate(labels)])
        if seed == 1:
            (run / "stepeval" / "dreamprm" / "stepbench.metrics.json").write_text(json.dumps({"data": str(steps)}))
    s = wc.main(["--seeds", "0,1", "--out", str(tmp_path), "--reuse", "--n_boot", "300"])
    st = s["step_level"]["stepbench"]
    assert set(st["per_seed"]) == {0, 1} and st["over_seeds"]["n"] == 60 and st["per_seed"][0]["n"] == 30
    for ci in (*st["per_seed"].values(), st["over_seeds"]):
        assert ci["diff"] == pytest.approx(ci["dreamprm"] - ci["vanilla"]) and ci["lo"] <= ci["diff"] <= ci["hi"]
    assert st["over_seeds"]["diff"] > 0
    # the point estimates are dreamprm.stepeval's macro-F1 on the whole set
    items = stepeval.read_step_set(tmp_path / "seed-0" / "world" / "steps" / "stepbench.jsonl", tmp_path)
    sc = stepeval.read_step_scores(tmp_path / "seed-0" / "stepeval" / "dreamprm" / "stepbench.scores.jsonl")
    full = stepeval.step_f1([sc[it.id] for it in items], [it.labels for it in items], 0.5)["macro_f1"]
    assert st["per_seed"][0]["dreamprm"] == pytest.approx(full)
    assert "## Step level" in (tmp_path / "CLAIMS.md").read_text()


def test_without_stepeval_or_score_files_no_step_section(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dreamprm.stepeval", None)  # an import of it fails
    wc = load_script("benchmarks/world_claims.py")
    fake_seed(tmp_path / "seed-0", 0, gap=3)
    s = wc.main(["--seeds", "0", "--out", str(tmp_path), "--reuse", "--n_boot", "200"])
    assert s["step_level"] == {} and "Step level" not in (tmp_path / "CLAIMS.md").read_text()
