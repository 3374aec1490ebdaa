"""The public Python API (dreamprm/api.py): the same numbers as BoN/score.py, aggregations by name, bad input."""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import ROOT
from dreamprm import PRMScorer, StepScores, bon
from dreamprm.cli import parse_args
from dreamprm.io import DataError
from dreamprm.miniworld.synthetic import write_bon_candidates
from dreamprm.prm import PRM


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory):
    """A trained PRM directory as reweighting/train.py leaves one: backbone, head, prm_config.json."""
    torch.manual_seed(0)
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32", "paper")
    torch.nn.init.normal_(prm.head.weight, std=0.05)
    out = tmp_path_factory.mktemp("trained") / "prm"
    prm.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def scorer(trained):
    return PRMScorer.from_pretrained(trained, device="cpu", precision="fp32")


def candidates(root):
    path = write_bon_candidates(root / "runs/rollouts", n_questions=3, n_candidates=4, n_steps=3,
                                image_size=(40, 60), dataset="bench")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scores_equal_bon_score_for_the_same_candidates(tmp_path, trained, scorer, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    records = candidates(tmp_path)
    cfg = parse_args(bon.ScoreConfig, ["--path", str(tmp_path), "--prm", str(trained), "--gpu", "cpu",
                                       "--benchmarks", "bench", "--n", "1,4", "--precision", "fp32"])
    bon.score_benchmarks(cfg)
    by_bon = {(r["id"], c["sample"]): c["scores"]
              for r in map(json.loads, (tmp_path / "runs/bon/dreamprm/bench.scores.jsonl").read_text().splitlines())
              for c in r["candidates"]}
    out = scorer.score([(r["image_path"], r["input"], r["response"]) for r in records])
    assert len(out) == len(records) == len(by_bon)
    for r, s in zip(records, out):
        assert s.step_scores == by_bon[(r["id"], r["sample"])]  # the same scorer, the same groups: equal floats
        assert len(s.steps) == 3 and s.steps[0].startswith("Step 1:")
    # another batch size packs other groups together: equal up to float rounding
    other = PRMScorer(scorer.prm, batch_size=3).score([(r["image_path"], r["input"], r["response"]) for r in records])
    for a, b in zip(out, other):
        assert a.step_scores == pytest.approx(b.step_scores, abs=1e-5)
    # and the pick per aggregation is BoN's pick
    selected = {json.loads(line)["id"]: json.loads(line) for line in
                (tmp_path / "runs/bon/dreamprm/bench.selected.jsonl").read_text().splitlines()}
    for qid, sel in selected.items():
        mine = [(s.score(), r["sample"]) for r, s in zip(records, out) if r["id"] == qid]
        best = max(v for v, _ in mine)
        assert sel["sample"] == min(k for v, k in mine if v == best)
        assert sel["score"] == pytest.approx(best, abs=1e-9)


def test_aggregations_by_name_and_responses_without_steps(scorer, tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 24), (200, 30, 30)).save(img)
    resp = "Step 1: count the bars.\nStep 2: there are 3.\nFinal answer: 3"
    out = scorer.score([{"image": str(img), "question": "How many bars?", "response": resp},
                        (None, "What is 2 + 3?", "just 5, no steps"),
                        (Image.open(img), "How many bars?", resp)])
    s, stepless, pil = out
    assert len(s.step_scores) == 2 and all(0 < x < 1 for x in s.step_scores)
    assert pil.step_scores == pytest.approx(s.step_scores, abs=1e-6)  # a PIL image is the file's image
    lo = [math.log(x / (1 - x)) for x in s.step_scores]
    assert s.score() == pytest.approx(1 / (1 + math.exp(-sum(lo) / 2)))
    assert s.score("min") == pytest.approx(min(s.step_scores)) and s.score("last") == pytest.approx(s.step_scores[-1])
    assert set(PRMScorer.aggregations) >= {"mean_log_odds", "min", "max", "mean", "prod", "last"}
    assert stepless.steps == [] and stepless.step_scores == [] and stepless.score() is None
    with pytest.raises(ValueError, match="aggregation must be one of"):
        s.score("median")
    assert scorer.rewards([("", "q", resp)][:0]) == []
    r = scorer.rewards([(str(img), "How many bars?", resp), (None, "q", "no steps")], "min")
    assert r[0] == pytest.approx(min(s.step_scores)) and r[1] is None
    assert StepScores(["a"], [0.5]).score() == pytest.approx(0.5)


def test_bad_triples_are_one_clear_error(scorer, tmp_path):
    with pytest.raises(DataError, match=r"triple 1: image .*gone.png not found"):
        scorer.score([(None, "q", "Step 1: a"), (str(tmp_path / "gone.png"), "q", "Step 1: a")])
    with pytest.raises(DataError, match="triple 0: missing response"):
        scorer.score([{"question": "q"}])
    with pytest.raises(DataError, match="triple 0: expected"):
        scorer.score(["just a string"])
    with pytest.raises(DataError, match="must be strings"):
        scorer.score([(None, "q", 3)])


def test_a_score_that_is_not_a_probability_is_refused(scorer, monkeypatch):
    monkeypatch.setattr(scorer, "_score", lambda samples: torch.full((sum(len(s.prefixes) for s in samples),),
                                                                    float("nan")))
    with pytest.raises(DataError, match="triple 0: the PRM scored step 1 as nan"):
        scorer.score([(None, "q", "Step 1: a\nFinal answer: 1")])


def test_a_hub_id_loads_the_trained_prm_with_its_head(trained, tmp_path):
    """A trained PRM pushed to the hub (prm_config.json and prm_head.pt in the repo) loads whole from a hub id:
    here from a hub cache written by hand, offline, so nothing is downloaded."""
    repo = tmp_path / "hub" / "models--someone--tiny-dreamprm"
    snap = repo / "snapshots" / ("a" * 40)
    shutil.copytree(trained, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    code = ("import json, sys; from dreamprm import PRMScorer\n"
            "t = [(None, 'What is 2 + 3?', 'Step 1: add them.\\nStep 2: 5.\\nFinal answer: 5')]\n"
            "print(json.dumps([PRMScorer.from_pretrained(n, 'cpu', 'fp32').score(t)[0].step_scores "
            "for n in sys.argv[1:]]))")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, "someone/tiny-dreamprm", str(trained)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    hub, local = json.loads(out.stdout.splitlines()[-1])
    assert hub == local and len(hub) == 2


def test_the_readme_example_runs(trained, tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = text.split("From Python (`dreamprm/api.py`)", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    Image.new("RGB", (40, 30), (10, 200, 10)).save(tmp_path / "chart.png")
    monkeypatch.chdir(tmp_path)
    env: dict = {}
    exec(code.replace('"runs/reweighting/prm"', repr(str(trained))), env)
    assert len(env["out"]) == 2 and len(env["out"][0].step_scores) == 2
    assert env["prm"].rewards(env["triples"]) == [s.score() for s in env["out"]]


def test_the_core_never_imports_the_mini_world():
    code = ("import sys, dreamprm.api, dreamprm.server, dreamprm.bon, dreamprm.backends, dreamprm.rollout, "
            "dreamprm.mc, dreamprm.reweighting, dreamprm.stepeval, dreamprm.tables, dreamprm.card\n"
            "print(sorted(m for m in sys.modules if m.startswith('dreamprm.miniworld')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
