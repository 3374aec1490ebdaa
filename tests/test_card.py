"""Model cards (dreamprm/card.py): written with every trained PRM, read back by the hub's own parser,
metrics added only from the files that measured them."""
import json

import pytest
from huggingface_hub import ModelCard

from dreamprm import PRMScorer
from dreamprm.card import CardConfig, update_card
from dreamprm.cli import parse_args
from dreamprm.io import DataError
from dreamprm.miniworld.synthetic import write_reweighting_problem
from dreamprm.reweighting import ReweightConfig, train


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    write_reweighting_problem(root, per_domain=3)
    summary = train(parse_args(ReweightConfig, [
        "--path", str(root), "--train", "train.jsonl", "--meta", "meta.jsonl", "--prm", str(tiny_models["prm"]),
        "--out", "run", "--figs", "figs", "--gpu", "cpu", "--precision", "fp32", "--iterations", "6",
        "--log_every", "3", "--train_batch_size", "2", "--meta_lr", "0.05"]))
    return root, summary


def test_the_trained_prm_carries_a_card_the_hub_parses(trained):
    root, summary = trained
    prm = root / "run/prm"
    card = ModelCard.load(prm / "README.md")
    assert card.data.library_name == "transformers" and "process-reward-model" in card.data.tags
    assert card.data.base_model is None  # a local base model is no hub id: not claimed as one
    training = json.loads((prm / "training.json").read_text())
    recs = [json.loads(x) for x in (root / "train.jsonl").read_text().splitlines()]
    assert training["train"]["samples"] == len(recs) == sum(training["train"]["by_domain"].values())
    weights = json.loads((root / "run/domain_weights.json").read_text())
    assert training["weights"] == weights == summary["weights"]
    log = [json.loads(x) for x in (root / "run/log.jsonl").read_text().splitlines()]
    assert training["final"] == {k: log[-1][k] for k in ("iteration", "lower_loss", "upper_loss")}
    text = card.text
    for d, w in weights.items():
        assert f"| {d} | {training['train']['by_domain'][d]} | {w:.4g} |" in text
    assert f"{log[-1]['lower_loss']:.4g}" in text and "No evaluation has been recorded" in text
    assert "PRMScorer.from_pretrained" in text and "python -m dreamprm.server" in text
    assert len(PRMScorer.from_pretrained(prm, "cpu", "fp32").score([(None, "q", "Step 1: a.\nFinal answer: 1")])) == 1


def test_measured_metrics_are_added_and_nothing_else(trained):
    root, _ = trained
    results = {"run": "dreamprm", "aggregation": "mean_log_odds", "n": [1, 8],
               "benchmarks": {"mathvista": {"accuracy": {"prm:mean_log_odds": {"1": 60.0, "8": 68.9}}},
                              "wemath": {"accuracy": {"prm:mean_log_odds": {"1": 50.0, "8": 57.4}}}}}
    (root / "results.json").write_text(json.dumps(results))
    (root / "vpb.metrics.json").write_text(json.dumps({"overall": {"macro_f1": 61.25}, "n_solutions": 40}))
    update_card(parse_args(CardConfig, ["--path", str(root), "--prm", "run/prm", "--bon", "results.json",
                                        "--step_eval", "vpb.metrics.json"]))
    card = ModelCard.load(root / "run/prm/README.md")
    got = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got == {("mathvista", "accuracy"): 68.9, ("wemath", "accuracy"): 57.4, ("vpb", "f1"): 61.25}
    assert "| mathvista | 68.9 |" in card.text and "macro-F1 61.25 %" in card.text
    assert "No evaluation has been recorded" not in card.text
    # a second update keeps what the first added
    update_card(parse_args(CardConfig, ["--path", str(root), "--prm", "run/prm"]))
    assert "| wemath | 57.4 |" in ModelCard.load(root / "run/prm/README.md").text
    (root / "bad.json").write_text(json.dumps({"run": "x", "n": [8], "aggregation": "min", "benchmarks": {}}))
    with pytest.raises(DataError, match="no PRM accuracy at N = 8"):
        update_card(parse_args(CardConfig, ["--path", str(root), "--prm", "run/prm", "--bon", "bad.json"]))
    with pytest.raises(DataError, match="no training.json"):
        update_card(parse_args(CardConfig, ["--path", str(root), "--prm", "."]))
