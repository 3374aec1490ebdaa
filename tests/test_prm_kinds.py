"""The PRM kind switch (`scalar` | `generative`) through training, best-of-N and step-level scoring, and the
generative kind's readers on rows shaped like the outside world's (our export, DreamPRM-1.5's JSON, by hand)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dreamprm import bon, stepeval
from dreamprm.chats import load_meta_chats, load_train_chats
from dreamprm.cli import parse_args
from dreamprm.generative import GenerativePRM, sample_chat, steps_chat
from dreamprm.io import DataError
from dreamprm.prm import load_prm, saved_kind
from dreamprm.reweighting import ReweightConfig, train
from dreamprm.samples import response_sample
from dreamprm.miniworld.synthetic import write_reweighting_problem

ROOT = Path(__file__).resolve().parents[1]
OWN_SYSTEM = "Judge each step; answer + or - only."  # a system prompt of the user's own


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def release_meta_row(i, good, image=None):
    """A meta row as DreamPRM-1.5's meta_MMMU_Pro.json has it: the question and the whole response in two human
    turns, then one gpt '+' placeholder, `true_false` beside."""
    row = {"id": f"test_Art_{i}", "response": "B" if good else "D", "true_false": good, "conversations": [
        {"from": "system", "value": OWN_SYSTEM},
        {"from": "human", "value": f"### Question:\nQuestion: <image 1> which one? ({i})\n\nOptions: (A) 1 (B) 2"},
        {"from": "human", "value": "Step 1: Look at it. Step 2: It is two.\n\nAnswer: " + ("B" if good else "D")},
        {"from": "gpt", "value": "+"}]}
    if image:
        row["image"] = image
    return row


def train_config(root, prm, *extra):
    return parse_args(ReweightConfig, ["--path", str(root), "--train", "train.jsonl", "--meta", "meta.jsonl",
                                       "--prm", str(prm), "--out", "run", "--figs", "figs", "--gpu", "cpu",
                                       "--precision", "fp32", "--lr", "2e-3", "--meta_lr", "0.05", "--log_every", "5",
                                       "--prm_kind", "generative", "--train_batch_size", "2", "--net_hidden", "8",
                                       *extra])


# --- readers -------------------------------------------------------------------------------------------

def test_our_released_format_train_records_become_one_chat_per_response(tmp_path):
    train_path, _ = write_reweighting_problem(tmp_path, per_domain=2, released=True)  # no score / times
    data = load_train_chats(train_path, tmp_path)
    assert len(data.samples) == 6 and data.instances[0] == "clean_a-0-0"  # <id>-<sample>, one per response
    c = data.samples[0]
    assert len(c.users) == len(c.labels) == 2 and c.users[0][0].startswith("How many squares? (0)\n\nSolution:\n")
    recs = [json.loads(x) for x in train_path.read_text().splitlines()]
    assert c.labels == [r["accuracy"] > 0.5 for r in recs[:2]]
    assert data.domains[:2] == ["clean_a", "clean_a"] and set(data.domains) == {"clean_a", "clean_b", "noisy"}


def test_exported_conversation_rows_read_back_as_the_chats_of_the_records_they_came_from(tmp_path):
    """MC/export_conversations.py's rows and the MC records they were made from give the same chats and ids."""
    nodes = []
    for q in range(2):
        for sid, (add, acc) in enumerate([("Step 1: Count.\n\n", 0.75), ("Step 1: Count.\n\nStep 2: Three.\n\n", 0.25)], 1):
            nodes.append({"id": f"q{q}", "sample": 0, "sid": sid, "input": f"How many? ({q})", "add": add,
                          "ground_truth": "3", "image_path": None, "dataset": "geos", "score": int(acc * 4),
                          "times": 4, "accuracy": acc})
    jsonl(tmp_path / "estimate.jsonl", nodes)
    out = tmp_path / "conversations.jsonl"
    subprocess.run([sys.executable, str(ROOT / "MC/export_conversations.py"), "--path", str(tmp_path),
                    "--nodes", "estimate.jsonl", "--out", str(out)], check=True, capture_output=True)
    rows, direct = load_train_chats(out, tmp_path), load_train_chats(tmp_path / "estimate.jsonl", tmp_path)
    assert rows.samples == direct.samples and rows.instances == direct.instances == ["q0-0", "q1-0"]
    assert rows.samples[0].labels == [True, False] and rows.domains == ["geos", "geos"]


def test_release_shaped_meta_rows_keep_their_turns_and_system_prompt(tmp_path, images):
    images[0].save(tmp_path / "m.png")
    rows = [release_meta_row(0, True, image="m.png"), release_meta_row(1, False, image=["m.png", "other.png"])]
    (tmp_path / "meta.json").write_text(json.dumps(rows))
    data = load_meta_chats(tmp_path / "meta.json", tmp_path)
    assert data.labels == [1.0, 0.0]
    c = data.samples[0]
    assert c.system == OWN_SYSTEM and len(c.users) == 1 and len(c.users[0]) == 2 and c.labels == [True]
    assert c.image == str(tmp_path / "m.png") and data.samples[1].image == str(tmp_path / "m.png")  # first of a list


def test_bad_hand_written_rows_are_skipped_and_named_by_line(tmp_path):
    good = {"id": "a", "conversations": [{"from": "human", "value": "Q\n\nStep 1"}, {"from": "gpt", "value": "+"}]}
    bad = [
        {"id": "b", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "yes"}]},  # bad label
        {"id": "c", "conversations": [{"from": "gpt", "value": "+"}]},  # no human turn before the verdict
        {"id": "d", "conversations": [{"from": "human", "value": "Q"}]},  # nothing to score
        {"id": "e", "conversations": "human: Q"},  # not a list
        {"id": "f", "conversations": [{"from": "user", "value": "Q"}, {"from": "gpt", "value": "+"}]},  # role
        {"id": "a", "conversations": good["conversations"]},  # a second weight for id a
        {"id": "g", "image": "nowhere.png", "conversations": good["conversations"]},
    ]
    path = jsonl(tmp_path / "train.jsonl", [good, *bad])
    data = load_train_chats(path, tmp_path)
    assert data.instances == ["a"]
    assert data.skips.total == len(bad)
    line = data.skips.line()
    for kind in ("bad label", "bad turn", "no steps", "wrong type", "duplicate id", "missing image"):
        assert kind in line, line
    assert f"{path}:2" in line
    jsonl(tmp_path / "none.jsonl", bad[:3])
    with pytest.raises(DataError, match="no usable train record"):
        load_train_chats(tmp_path / "none.jsonl", tmp_path)


def test_a_sample_and_its_steps_make_the_same_chat():
    resp = "Step 1: Count the squares.\n\nStep 2: There are 3.\n\nFinal answer: 3"
    s = response_sample("How many?", resp, None)
    assert sample_chat(s) == steps_chat("How many?", ["Step 1: Count the squares.", "Step 2: There are 3."])


# --- training, saving, scoring ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def generative_run(tmp_path_factory, tiny_models):
    """A generative PRM trained on conversation rows (with a system prompt of their own) and release-shaped meta
    rows, instance table."""
    root = tmp_path_factory.mktemp("gen")
    train_path, _ = write_reweighting_problem(root, per_domain=3)
    rows = load_train_chats(train_path, root)
    conv = []
    for inst, chat, dom in zip(rows.instances, rows.samples, rows.domains):
        turns = [{"from": "system", "value": OWN_SYSTEM}]
        for users, ok in zip(chat.users, chat.labels):
            turns += [{"from": "human", "value": u} for u in users] + [{"from": "gpt", "value": "+" if ok else "-"}]
        conv.append({"id": inst, "dataset": dom, "conversations": turns})
    jsonl(root / "train.jsonl", conv)
    (root / "meta.jsonl").unlink()
    (root / "meta.json").write_text(json.dumps([release_meta_row(i, i % 2 == 0) for i in range(4)]))
    cfg = train_config(root, tiny_models["prm"], "--meta", "meta.json", "--iterations", "6",
                       "--reweight", "instance_table")
    return root, train(cfg)


def test_a_generative_run_saves_its_kind_system_prompt_and_instance_weights(generative_run):
    root, summary = generative_run
    assert summary["prm_kind"] == "generative" and summary["reweight"] == "instance_table"
    saved = json.loads((root / "run/prm/prm_config.json").read_text())
    assert saved == {"kind": "generative", "input_format": "conversation", "system_prompt": OWN_SYSTEM}
    assert saved_kind(root / "run/prm") == "generative" and isinstance(load_prm(str(root / "run/prm"), "cpu"),
                                                                      GenerativePRM)
    weights = json.loads((root / "run/instance_weights.json").read_text())
    assert {w["instance"] for w in weights} == {f"{d}-{q}-0" for d in ("clean_a", "clean_b", "noisy") for q in range(3)}
    assert set(summary["instance_weights_by_domain"]) == {"clean_a", "clean_b", "noisy"}


def test_bon_and_step_eval_score_a_generative_prm_as_its_own_scorer_does(generative_run, tmp_path):
    root, _ = generative_run
    prm = GenerativePRM.from_pretrained(str(root / "run/prm"), "cpu", "fp32").eval()
    assert prm.system == OWN_SYSTEM
    (tmp_path / "runs/rollouts").mkdir(parents=True)
    cands = [{"id": "q1", "sample": k, "input": "How many squares?", "true_false": k == 1, "answer": "3",
              "response": f"Step 1: Count them.\n\nStep 2: I get {k + 2}.\n\nFinal answer: {k + 2}"} for k in range(3)]
    jsonl(tmp_path / "runs/rollouts/mathvista.jsonl", cands)
    cfg = parse_args(bon.ScoreConfig, ["--path", str(tmp_path), "--prm", str(root / "run/prm"), "--gpu", "cpu",
                                       "--benchmarks", "mathvista", "--n", "1,3", "--no_select"])
    bon.score_benchmarks(cfg)
    rec = json.loads((tmp_path / "runs/bon/dreamprm/mathvista.scores.jsonl").read_text())
    assert rec["format"] == "conversation"
    with torch.no_grad():
        want = prm.score([response_sample(c["input"], c["response"], None) for c in cands]).tolist()
    got = [x for c in rec["candidates"] for x in c["scores"]]
    assert got == pytest.approx(want, abs=1e-5) and len(got) == 6  # two steps per candidate
    # step-level evaluation through the same scorer, on a step set written by hand
    jsonl(tmp_path / "steps.jsonl", [{"id": "s1", "dataset": "hand", "input": "How many squares?",
                                      "steps": ["Count them.", "I get 3."], "labels": [1, -1]}])
    items = stepeval.read_step_set(tmp_path / "steps.jsonl", tmp_path)
    scores = stepeval.prm_scorer(prm)(items)
    with torch.no_grad():
        assert scores[0] == pytest.approx(prm.score([stepeval.step_sample(items[0])]).tolist(), abs=1e-6)


def test_the_api_loads_a_generative_prm_and_scores_as_bon_does(generative_run, tmp_path):
    from huggingface_hub import ModelCard

    from dreamprm import PRMScorer

    root, _ = generative_run
    api = PRMScorer.from_pretrained(root / "run/prm", "cpu", "fp32")
    assert api.prm.kind == "generative"
    cands = [{"id": "q1", "sample": k, "input": "How many squares?", "true_false": k == 0,
              "response": f"Step 1: Count them.\n\nStep 2: I get {k + 2}.\n\nFinal answer: {k + 2}"} for k in range(3)]
    (tmp_path / "runs/rollouts").mkdir(parents=True)
    jsonl(tmp_path / "runs/rollouts/mathvista.jsonl", cands)
    bon.score_benchmarks(parse_args(bon.ScoreConfig, ["--path", str(tmp_path), "--prm", str(root / "run/prm"),
                                                      "--gpu", "cpu", "--benchmarks", "mathvista", "--no_select"]))
    rec = json.loads((tmp_path / "runs/bon/dreamprm/mathvista.scores.jsonl").read_text())
    got = api.score([(None, c["input"], c["response"]) for c in cands])
    assert [s.step_scores for s in got] == [c["scores"] for c in rec["candidates"]]
    card = ModelCard.load(root / "run/prm/README.md")  # the card says what kind it is
    assert "prm-generative" in card.data.tags and "A generative process reward model" in card.text
    assert "prm_head.pt" not in card.text


def test_a_base_model_is_scored_as_generative_only_when_asked(tiny_models, tmp_path):
    base = str(tiny_models["prm"])
    cfg = parse_args(bon.ScoreConfig, ["--path", str(tmp_path), "--prm", base])
    assert bon.resolve_format(cfg, base) == "paper"
    cfg = parse_args(bon.ScoreConfig, ["--path", str(tmp_path), "--prm", base, "--prm_kind", "generative"])
    assert bon.resolve_format(cfg, base) == "conversation"
    cfg = parse_args(bon.ScoreConfig, ["--path", str(tmp_path), "--prm", base, "--prm_kind", "generative",
                                       "--input_format", "stepwise"])
    with pytest.raises(DataError, match="reads conversations"):
        bon.resolve_format(cfg, base)


def test_cold_start_continues_from_a_plain_runs_prm(generative_run, tiny_models):
    """The 1.5 cold start: a --baseline run, then the bi-level run with --prm set to its PRM; the second run starts
    from the first one's weights, not the base model's."""
    root, _ = generative_run
    cold = train(train_config(root, tiny_models["prm"], "--meta", "meta.json", "--iterations", "4", "--baseline",
                              "--out", "cold", "--figs", "figs_cold"))
    warm = GenerativePRM.from_pretrained(cold["prm"], "cpu", "fp32")
    base = GenerativePRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32")
    changed = [k for k, v in warm.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed  # the plain run trained the PRM
    cfg = train_config(root, cold["prm"], "--meta", "meta.json", "--iterations", "2", "--reweight", "instance_net",
                       "--out", "bilevel", "--figs", "figs_bilevel", "--lr", "0")
    summary = train(cfg)
    after = GenerativePRM.from_pretrained(summary["prm"], "cpu", "fp32")
    assert all(torch.equal(v, warm.state_dict()[k]) for k, v in after.state_dict().items())  # lr 0: still the cold PRM
    assert summary["reweight"] == "instance_net" and len(json.loads((root / "bilevel/instance_weights.json")
                                                                     .read_text())) > 0


def test_instance_net_needs_the_generative_kind(generative_run, tiny_models):
    root, _ = generative_run
    with pytest.raises(DataError, match="needs --prm_kind generative"):
        train(train_config(root, tiny_models["prm"], "--prm_kind", "scalar", "--reweight", "instance_net",
                           "--out", "x"))
