"""Step-level evaluation (dreamprm/stepeval.py, BoN/step_eval.py, dataset/sources/visualprocessbench.py).

The VisualProcessBench source on a small local copy in the hub's schema (test.jsonl + images/ or images.zip; the
hub path with snapshot_download faked); the metrics against hand computations; the held-out threshold; the
random baseline on a larger synthetic set; the command end to end with a tiny PRM, a kill and --resume. Nothing
here touches the network.
"""
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before `datasets` / `huggingface_hub` are imported anywhere here
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from dataset import prepare  # noqa: E402
from dreamprm import stepeval  # noqa: E402
from dreamprm.cli import parse_args  # noqa: E402
from dreamprm.io import DataError, OutputLocked, Skips, lock_path  # noqa: E402
from dreamprm.stepeval import (StepEvalConfig, StepItem, apply_neutral, auroc, best_threshold,  # noqa: E402
                               first_error, half_of, heldout_threshold, random_scores, read_step_set, report,
                               run_step_eval, step_f1, step_sample)
from dreamprm.steps import find_steps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # --gpu cpu sets it; restored after each test


def png(color=(200, 30, 30), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def hub_row(source, labels, image=("a.png",), response_as_string=False, **extra):
    steps = [f"{source} step {k}: look at the figure and compute {k} + {k}." for k in range(1, len(labels) + 1)]
    response = {"steps": steps, "process_correctness": labels}
    return {"image": list(image), "question": f"What does the {source} figure show?", "answer": "B",
            "response": json.dumps(response) if response_as_string else response, "policy_model": "GPT-4o",
            "data_source": source, **extra}


GOOD = [  # lines 1-5 of the fixture's test.jsonl
    hub_row("MMMU", [1, 1, 1]),                                          # no error
    hub_row("MathVision", [-1, 1, 1], image=("images/b.png",)),          # first step wrong; a path with images/
    hub_row("MathVerse", [1, 0, -1, 1, 0]),                               # neutral steps
    hub_row("DynaMath", [1, -1], image=("a.png", "c.png")),               # two images: the PRM sees the first
    hub_row("WeMath", [1, 1], response_as_string=True),                   # response as a JSON string (card YAML)
]
BAD = [  # lines 6-11, each a counted skip
    "{not json",
    json.dumps(hub_row("MMMU", [1, 1])).replace('"process_correctness": [1, 1]', '"process_correctness": [1]'),
    json.dumps(hub_row("MMMU", [1, 2])),
    json.dumps(hub_row("MMMU", [1], image=("gone.png",))),
    json.dumps({**hub_row("MMMU", [1]), "response": {"steps": [], "process_correctness": []}}),
    json.dumps(hub_row("", [1])),
]


def write_hub_copy(d: Path, zipped: bool = False) -> Path:
    """A local copy in the hub's layout: test.jsonl and images/ (or images.zip holding images/)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GOOD) + "\n".join(BAD) + "\n")
    files = {"images/a.png": png(), "images/b.png": png((0, 90, 0)), "images/c.png": png((0, 0, 90), (20, 20))}
    if zipped:
        with zipfile.ZipFile(d / "images.zip", "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
    else:
        for name, data in files.items():
            (d / name).parent.mkdir(exist_ok=True)
            (d / name).write_bytes(data)
    return d


def prepare_copy(root: Path, local: Path, *extra) -> int:
    # 6 of 11 rows are broken on purpose: a high ceiling
    return prepare.main(["--path", str(root), "--sources", "visualprocessbench", "--local", str(local),
                         "--max_skip_fraction", "0.9", *extra])


# --- the source ----------------------------------------------------------------------------------------

def test_source_reads_the_hub_schema_and_counts_bad_lines(tmp_path, capsys):
    local = write_hub_copy(tmp_path / "vpb")
    assert prepare_copy(tmp_path, local) == 0
    out = capsys.readouterr().out
    recs = [json.loads(x) for x in (tmp_path / "data/visualprocessbench.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == ["MMMU-1", "MathVision-2", "MathVerse-3", "DynaMath-4", "WeMath-5"]
    r = recs[0]
    assert list(r)[:8] == ["id", "input", "image_path", "ground_truth", "dataset", "type", "hint", "options"]
    assert (r["dataset"], r["ground_truth"], r["policy_model"], r["labels"]) == ("MMMU", "B", "GPT-4o", [1, 1, 1])
    assert r["steps"] == GOOD[0]["response"]["steps"] and r["input"] == GOOD[0]["question"]
    assert recs[2]["labels"] == [1, 0, -1, 1, 0] and recs[4]["labels"] == [1, 1]  # the JSON-string response
    multi = recs[3]
    assert multi["image_path"] == multi["image_paths"][0] and len(multi["image_paths"]) == 2
    assert all((tmp_path / p).is_file() for r in recs for p in r["image_paths"])
    done = json.loads((tmp_path / "data/visualprocessbench.jsonl.done").read_text())
    kinds = done["skipped"]["kinds"]
    assert {k: v["count"] for k, v in kinds.items()} == {
        "malformed JSON": 1, "steps and labels differ in number": 1, "bad label": 1, "image file not found": 1,
        "no steps": 1, "missing data_source": 1}
    for kind, line in (("malformed JSON", 6), ("steps and labels differ in number", 7), ("bad label", 8),
                       ("image file not found", 9), ("no steps", 10), ("missing data_source", 11)):
        assert kinds[kind]["first"][0].startswith(f"{local / 'test.jsonl'}:{line}"), kinds[kind]
    assert "visualprocessbench: skipped 6 of 11 records" in out


def test_source_unpacks_images_zip_and_asks_the_hub_for_the_two_files(tmp_path, monkeypatch):
    import huggingface_hub

    local = write_hub_copy(tmp_path / "vpb", zipped=True)
    assert prepare_copy(tmp_path, local) == 0  # --local with images.zip: unpacked under <out>/raw
    assert (tmp_path / "data/raw/visualprocessbench/images/a.png").is_file()
    assert len((tmp_path / "data/visualprocessbench.jsonl").read_text().splitlines()) == 5
    calls = []

    def fake_snapshot(repo_id, repo_type=None, cache_dir=None, allow_patterns=None):
        calls.append((repo_id, repo_type, sorted(allow_patterns)))
        return str(local)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert prepare.main(["--path", str(tmp_path), "--sources", "visualprocessbench", "--out", "hub",
                         "--max_skip_fraction", "0.9"]) == 0
    assert calls == [("OpenGVLab/VisualProcessBench", "dataset", ["images.zip", "test.jsonl"])]
    assert len((tmp_path / "hub/visualprocessbench.jsonl").read_text().splitlines()) == 5
    assert "visualprocessbench" not in parse_args(prepare.PrepareConfig, []).sources  # opt-in, never by default


def test_step_set_reader_neutral_rule_and_prm_input(tmp_path):
    assert prepare_copy(tmp_path, write_hub_copy(tmp_path / "vpb")) == 0
    items = read_step_set(tmp_path / "data/visualprocessbench.jsonl", tmp_path)
    assert [it.dataset for it in items] == ["MMMU", "MathVision", "MathVerse", "DynaMath", "WeMath"]
    assert items[2].labels == [1, 0, -1, 1, 0] and [it.n_images for it in items] == [1, 1, 1, 2, 1]
    assert all(it.image.is_file() for it in items)
    assert apply_neutral([1, 0, -1], "drop") == [1, 0, -1]
    assert apply_neutral([1, 0, -1], "correct") == [1, 1, -1]
    assert apply_neutral([1, 0, -1], "incorrect") == [1, -1, -1]
    # the PRM input: "Step k: " in front of each step, one nested prefix per labelled step, found by find_steps
    s = step_sample(items[2])
    assert len(s.prefixes) == 5 and s.prefixes[0] == "Step 1: " + items[2].steps[0]
    assert all(b.startswith(a) for a, b in zip(s.prefixes, s.prefixes[1:]))
    assert len(find_steps(s.prefixes[-1])) == 5 and s.question == items[2].question
    headed = StepItem("h", "d", "Q?", None, ["Step 1: add.", "**Step 2:** done.", "no header"], [1, 1, 1])
    assert step_sample(headed).prefixes[-1] == "Step 1: add.\n\n**Step 2:** done.\n\nStep 3: no header"


def test_bad_step_set_records_are_counted_with_their_lines(tmp_path):
    (tmp_path / "img.png").write_bytes(png())
    good = {"id": "a", "input": "Q?", "image_path": "img.png", "dataset": "d", "steps": ["x", "y"], "labels": [1, -1]}
    lines = [good, {**good, "id": "b", "labels": [1]}, {**good, "id": "c", "labels": [1, 2]},
             {**good, "id": "d", "steps": []}, {**good, "id": "e", "labels": [True, 1]}, {**good},  # a repeated id
             {**good, "id": "f", "image_path": "gone.png"}, {**good, "id": 1.5}]
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + "{broken\n")
    skips = Skips(path)
    items = read_step_set(path, tmp_path, skips, lambda p: None if Path(p).is_file() else stepeval.BadRecord(
        "missing image", str(p)))
    assert [it.id for it in items] == ["a"]
    assert dict(skips.counts) == {"inconsistent numbers": 1, "bad label": 2, "no steps": 1, "duplicate id": 1,
                                  "missing image": 1, "wrong type": 1, "malformed JSON": 1}
    assert skips.first["duplicate id"][0].startswith(f"{path}:6")
    assert skips.first["malformed JSON"][0].startswith(f"{path}:9 (")
    with pytest.raises(DataError, match=rf"{path}:2: inconsistent numbers"):
        read_step_set(path, tmp_path)  # without skips: the first bad record is one line


# --- the metrics, by hand ------------------------------------------------------------------------------

# Three solutions, threshold 0.5 (a step is predicted correct when score >= 0.5):
#   A, no error:            labels [ 1,  1,  1]     scores [0.9, 0.8, 0.7]   -> TP TP TP
#   B, first step wrong:    labels [-1,  1,  1]     scores [0.3, 0.6, 0.4]   -> TN TP FN
#   C, neutral, error at 3: labels [ 1,  0, -1, 1]  scores [0.6, 0.2, 0.7, 0.9] -> TP (dropped) FP TP
LABELS = [[1, 1, 1], [-1, 1, 1], [1, 0, -1, 1]]
SCORES = [[0.9, 0.8, 0.7], [0.3, 0.6, 0.4], [0.6, 0.2, 0.7, 0.9]]


def test_step_f1_by_hand():
    # drop: TP 6, FN 1, FP 1, TN 1. F1 correct = 2*6 / (2*6 + 1 + 1) = 12/14; F1 incorrect = 2*1 / (2*1 + 1 + 1)
    got = step_f1(SCORES, LABELS, 0.5)
    assert got == pytest.approx({"f1_correct": 100 * 12 / 14, "f1_incorrect": 50.0,
                                 "macro_f1": (100 * 12 / 14 + 50) / 2})
    assert step_f1([x for s in SCORES for x in s], [y for s in LABELS for y in s], 0.5) == got  # flat lists too
    # neutral = incorrect: C's 0.2 becomes a TN (TN 2): F1 incorrect = 4 / (4 + 1 + 1); F1 correct unchanged
    inc = step_f1(SCORES, [apply_neutral(y, "incorrect") for y in LABELS], 0.5)
    assert inc["f1_incorrect"] == pytest.approx(400 / 6) and inc["f1_correct"] == pytest.approx(100 * 12 / 14)
    # neutral = correct: C's 0.2 becomes a FN (FN 2): F1 correct = 12 / (12 + 1 + 2), F1 incorrect = 2 / (2 + 2 + 1)
    cor = step_f1(SCORES, [apply_neutral(y, "correct") for y in LABELS], 0.5)
    assert cor == pytest.approx({"f1_correct": 80.0, "f1_incorrect": 40.0, "macro_f1": 60.0})
    # a threshold above every score: all predicted incorrect (TP 0, FN 7, TN 2, FP 0): F1 correct 0,
    # F1 incorrect 2*2 / (2*2 + 7 + 0) = 4/11
    assert step_f1(SCORES, LABELS, 0.95) == pytest.approx({"f1_correct": 0.0, "f1_incorrect": 400 / 11,
                                                          "macro_f1": 200 / 11})
    assert step_f1([[0.7]], [[1]], 0.5)["f1_incorrect"] is None  # no incorrect step, none predicted: undefined


def test_first_error_by_hand():
    # predicted first error = earliest score < 0.5: A none, B step 1 (index 0), C step 2 (index 1: the neutral
    # step's 0.2). True first error = earliest -1: A none (fully correct), B index 0, C index 2.
    # erroneous solutions B, C: B right, C wrong -> 50 %; fully correct A: no step flagged -> 100 %;
    # harmonic mean 2 * 50 * 100 / 150 = 66.67
    got = first_error(SCORES, LABELS, 0.5)
    assert got == pytest.approx({"acc_erroneous": 50.0, "acc_correct": 100.0, "f1": 2 * 50 * 100 / 150,
                                 "n_erroneous": 2, "n_correct": 1})
    # neutral = incorrect: C's true first error is its neutral step (index 1), which is what was predicted
    assert first_error(SCORES, [apply_neutral(y, "incorrect") for y in LABELS], 0.5)["acc_erroneous"] == 100.0
    # at 0.75, A's 0.7 is flagged: A wrong (0 %), B right, C's first flag is index 0 -> wrong; HM of 50 and 0 is 0
    assert first_error(SCORES, LABELS, 0.75) == pytest.approx({"acc_erroneous": 50.0, "acc_correct": 0.0, "f1": 0.0,
                                                               "n_erroneous": 2, "n_correct": 1})
    assert first_error([[0.9]], [[1]])["f1"] is None  # no erroneous solution: no harmonic mean


def test_auroc_by_hand():
    # correct steps 0.8, 0.4, 0.6 against incorrect 0.5, 0.6 (the neutral 0.1 is left out): of the 6 pairs,
    # 0.8 beats both, 0.6 beats 0.5 and ties 0.6 (one half), 0.4 beats none -> 3.5 / 6
    assert auroc([[0.8, 0.5, 0.1], [0.4, 0.6, 0.6]], [[1, -1, 0], [1, -1, 1]]) == pytest.approx(3.5 / 6)
    assert auroc([0.9, 0.1], [1, -1]) == 1.0 and auroc([0.1, 0.9], [1, -1]) == 0.0
    assert auroc([0.3, 0.3], [1, -1]) == 0.5 and auroc([0.3], [1]) is None


def test_threshold_chosen_on_one_half_is_reported_on_the_other():
    ids = [f"s{i}" for i in range(40)]
    half = {i: half_of(i, 3) for i in ids}
    assert set(half.values()) == {0, 1} and half == {i: half_of(i, 3) for i in ids}  # seeded, stable
    # half A (0): correct steps 0.8, incorrect 0.6 -> best threshold 0.8 (perfect there); half B (1): 0.4 / 0.2 ->
    # 0.4. Each is perfect on its own half and wrong on the other: 0.8 calls every B step incorrect (F1 correct
    # 0, F1 incorrect 2n / (2n + n) = 66.67, as B has as many correct as incorrect steps), 0.4 calls every A step
    # correct (66.67 and 0): both held-out macro-F1s are 33.33, the fit ones 100.
    scores = [[0.8, 0.6] if half[i] == 0 else [0.4, 0.2] for i in ids]
    labels = [[1, -1]] * len(ids)
    a = [s for i, s in zip(ids, scores) if half[i] == 0]
    assert best_threshold(a, [[1, -1]] * len(a)) == (0.8, 100.0)
    h = heldout_threshold(ids, scores, labels, seed=3)
    assert [(x["chosen_on"], x["threshold"], x["fit_macro_f1"]) for x in h["halves"]] == [("A", 0.8, 100.0),
                                                                                          ("B", 0.4, 100.0)]
    assert [x["macro_f1"] for x in h["halves"]] == pytest.approx([100 / 3, 100 / 3])
    assert h["macro_f1"] == pytest.approx(100 / 3) and h["threshold"] == pytest.approx(0.6)
    # ties go to the lowest threshold: 0.3 and 0.5 both separate these perfectly
    assert best_threshold([0.5, 0.3, 0.1], [1, 1, -1])[0] == 0.3


def test_random_scorer_is_near_50_macro_f1_on_a_balanced_set():
    # 4,000 solutions x 5 steps, exactly half of the 20,000 steps correct. A score independent of the label and
    # above 0.5 half the time predicts each class with precision 1/2 and recall 1/2: F1 = 1/2 for both classes,
    # so E[macro-F1] = 50 (with a share p of correct steps it is 50 * (p/(p + 1/2) + (1-p)/(3/2 - p)), 48.3 at
    # VisualProcessBench's p = 16,585 / 24,276; 50 is the balanced value). Spread: each F1 rests on ~10,000 steps
    # of a class, a binomial proportion with standard deviation 100 * sqrt(1/4 / 10,000) = 0.5 points; 200 draws
    # of uniform scores on these labels gave macro-F1 50.03 +- 0.35 (sd). 2 points is over 5 standard deviations:
    # the test fails only for a scorer that is not label-blind and uniform, or a wrong F1.
    ids = [f"r{i}" for i in range(4000)]
    labels = [[1 if (i + k) % 2 == 0 else -1 for k in range(5)] for i in range(len(ids))]
    scores = [random_scores(i, 5, seed=7) for i in ids]
    assert random_scores("r1", 5, seed=7) == scores[1] != random_scores("r1", 5, seed=8)  # seeded by (seed, id)
    assert random_scores("r1", 3, seed=7) == scores[1][:3]  # and by step: a prefix of steps scores the same
    assert all(0 <= x < 1 for s in scores for x in s)
    assert step_f1(scores, labels)["macro_f1"] == pytest.approx(50, abs=2)
    # AUROC of a random scorer: 0.5, standard deviation sqrt((n1 + n2 + 1) / (12 n1 n2)) ~ 0.004 here
    assert auroc(scores, labels) == pytest.approx(0.5, abs=0.02)


def test_report_groups_by_dataset_and_leaves_out_unscored_items():
    items = [StepItem(f"x{i}", "P" if i < 2 else "Q", "Q?", None, ["a"] * len(y), y) for i, y in enumerate(LABELS)]
    items.append(StepItem("x3", "Q", "Q?", None, ["a", "b"], [1, -1], n_images=2))
    items.append(StepItem("x4", "Q", "Q?", None, ["a"], [1]))
    scores = {"x0": SCORES[0], "x1": SCORES[1], "x2": SCORES[2], "x3": [0.9]}  # x3: wrong length, x4: none
    rep = report(items, scores, 0.5)
    assert rep["overall"]["macro_f1"] == pytest.approx(step_f1(SCORES, LABELS)["macro_f1"])
    assert rep["overall"]["first_error"]["f1"] == pytest.approx(200 / 3)
    assert set(rep["by_dataset"]) == {"P", "Q"} and rep["by_dataset"]["Q"]["n_solutions"] == 1
    assert rep["n_solutions"] == 3 and rep["n_steps"] == {"correct": 7, "incorrect": 2, "neutral": 1}
    assert rep["left_out"] == {"without scores": 1, "scores not one per step": 1}
    assert rep["multi_image_solutions"] == 0  # x3 has two images but no usable scores
    with pytest.raises(DataError, match="nothing to evaluate"):
        report(items, {}, 0.5)


# --- the command end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_prm(tmp_path_factory):
    """A tiny PRM saved with a spread head, so every run loads the same weights and scores differ by step."""
    import torch

    from dreamprm.prm import PRM
    from dreamprm.miniworld.tiny import build_prm

    d = tmp_path_factory.mktemp("prm")
    torch.manual_seed(0)
    build_prm(d / "base")
    prm = PRM.from_pretrained(str(d / "base"), "cpu", "fp32", "paper")
    torch.nn.init.normal_(prm.head.weight, std=0.05)
    prm.save_pretrained(d / "prm")
    return d / "prm"


def eval_args(root, prm, *extra):
    return ["--path", str(root), "--prm", str(prm), "--gpu", "cpu", "--batch_size", "2", *extra]


def test_step_eval_end_to_end_with_a_kill_and_resume(tmp_path, trained_prm, monkeypatch, capsys):
    assert prepare_copy(tmp_path, write_hub_copy(tmp_path / "vpb")) == 0
    real, calls = stepeval.prm_scorer, []

    def dying(prm):
        score = real(prm)

        def wrapped(batch):
            calls.append(len(batch))
            if len(calls) == 2:
                raise KeyboardInterrupt  # killed in the second batch: the first one's 2 solutions are written
            return score(batch)
        return wrapped

    monkeypatch.setattr(stepeval, "prm_scorer", dying)
    out = tmp_path / "runs/stepeval/dreamprm/visualprocessbench.scores.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, trained_prm)))
    assert len(out.read_text().splitlines()) == 2
    with open(out, "a") as f:
        f.write('{"id": "MMMU-1", "sco')  # and a line torn by the kill
    with pytest.raises(FileExistsError):  # without --resume nothing is overwritten
        run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, trained_prm)))
    metrics = run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, trained_prm, "--resume")))
    log = capsys.readouterr().out
    assert metrics["scoring"] == {"solutions": 5, "scored in this run": 3, "resumed": 2,
                                  "steps split differently by find_steps": 0,
                                  "scored ids not in the step set (ignored)": 0}
    fresh = run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, trained_prm, "--name", "fresh")))
    rows = lambda p: [json.loads(x) for x in p.read_text().splitlines()]  # noqa: E731
    resumed, whole = rows(out), rows(tmp_path / "runs/stepeval/fresh/visualprocessbench.scores.jsonl")
    assert [r["id"] for r in resumed] == [r["id"] for r in whole] == [
        "MMMU-1", "MathVision-2", "MathVerse-3", "DynaMath-4", "WeMath-5"]  # input order, whatever was resumed
    for a, b in zip(resumed, whole):
        assert (a["dataset"], a["prm"], a["format"]) == (b["dataset"], b["prm"], "paper")
        assert len(a["scores"]) == len(b["scores"]) and a["scores"] == pytest.approx(b["scores"], abs=1e-5)
        assert all(0 <= x <= 1 for x in a["scores"])
    assert len({x for r in whole for x in r["scores"]}) > 5  # the spread head: scores differ between steps
    for key in ("macro_f1", "f1_correct", "f1_incorrect", "auroc"):
        assert metrics["overall"][key] == pytest.approx(fresh["overall"][key], abs=1e-6)
    saved = json.loads((tmp_path / "runs/stepeval/dreamprm/visualprocessbench.metrics.json").read_text())
    assert saved["overall"] == json.loads(json.dumps(metrics["overall"]))  # what was returned is what was written
    assert set(saved["by_dataset"]) == {"MMMU", "MathVision", "MathVerse", "DynaMath", "WeMath"}
    assert saved["n_steps"] == {"correct": 10, "incorrect": 3, "neutral": 2} and saved["multi_image_solutions"] == 1
    assert saved["published_overall_macro_f1"]["VisualPRM-8B"] == 62.0 and saved["neutral"] == "drop"
    assert "VisualPRM-8B 62.0, GPT-4o 60.3, Gemini-2.0-Flash 62.3, Random guessing 50.0" in log
    assert "held-out threshold" in log and "overall" in log and "DynaMath" in log
    # another PRM (here: the random baseline) never continues these scores; the metrics are refused without --resume
    with pytest.raises(DataError, match="scored with PRM"):
        run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, "random", "--resume", "--name", "dreamprm")))
    with pytest.raises(FileExistsError, match="metrics.json exists"):
        run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, trained_prm, "--name", "fresh")))


def test_a_nan_score_stops_the_run_naming_the_solution(tmp_path, monkeypatch):
    assert prepare_copy(tmp_path, write_hub_copy(tmp_path / "vpb")) == 0
    monkeypatch.setattr(stepeval, "prm_scorer", lambda prm: lambda batch: [[float("nan")] * len(it.steps)
                                                                           for it in batch])
    monkeypatch.setattr("dreamprm.bon.load_prm", lambda cfg, location, fmt: None)
    (tmp_path / "prm").mkdir()
    with pytest.raises(DataError, match=r"visualprocessbench.jsonl:\d+: the PRM scored step 1 of solution"):
        run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, "prm")))


def test_random_baseline_through_the_script_and_the_locked_output(tmp_path):
    from filelock import FileLock

    assert prepare_copy(tmp_path, write_hub_copy(tmp_path / "vpb")) == 0
    cmd = [sys.executable, str(ROOT / "BoN/step_eval.py"), "--path", str(tmp_path), "--prm", "random",
           "--name", "random", "--gpu", "cpu"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)  # another cwd: the bootstrap
    assert done.returncode == 0, done.stderr
    m = json.loads((tmp_path / "runs/stepeval/random/visualprocessbench.metrics.json").read_text())
    assert m["format"] == "uniform, seed 42" and m["n_solutions"] == 5 and "macro-F1" in done.stdout
    first = (tmp_path / "runs/stepeval/random/visualprocessbench.scores.jsonl").read_text()
    assert json.loads(first.splitlines()[0])["scores"] == random_scores("MMMU-1", 3, 42)
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "--resume" in again.stderr
    assert "Traceback" not in again.stderr
    # a second run of the same output while one holds it is refused at once
    lock = FileLock(str(lock_path(tmp_path / "runs/stepeval/random", directory=True)), timeout=0)
    lock.acquire()
    try:
        with pytest.raises(OutputLocked, match="being written by another process"):
            run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, "random", "--name", "random", "--resume")))
    finally:
        lock.release()


def test_options_are_checked_and_help_works(tmp_path, capsys):
    import runpy

    ns = runpy.run_path(str(ROOT / "BoN/step_eval.py"), run_name="imported")  # the entry point imports cleanly
    assert StepEvalConfig in ns.values()
    with pytest.raises(SystemExit) as e:
        parse_args(StepEvalConfig, ["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--neutral" in out and "--threshold" in out and "--prm" in out
    for bad, msg in ((["--neutral", "maybe"], "--neutral"), (["--threshold", "1.5"], "--threshold"),
                     (["--batch_size", "0"], "--batch_size")):
        with pytest.raises(DataError, match=msg):
            run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, "random", *bad)))
    with pytest.raises(DataError, match="--prm runs/x/prm: no such directory"):
        run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path, "runs/x/prm")))
    assert not (tmp_path / "runs/stepeval/dreamprm/visualprocessbench.scores.jsonl").exists()


def test_sharded_step_scoring_merged_then_rerun_equals_one_process(tmp_path, trained_prm, monkeypatch):
    from dreamprm import shards

    for d in ("one", "split"):
        assert prepare_copy(tmp_path / d, write_hub_copy(tmp_path / d / "vpb")) == 0
    one = run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path / "one", trained_prm)))
    for i in range(2):
        got = run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path / "split", trained_prm, "--shard", f"{i}/2")))
        assert got["shard"] == f"{i}/2" and got["scored in this run"] > 0
    out = tmp_path / "split/runs/stepeval/dreamprm"
    assert not (out / "visualprocessbench.metrics.json").exists()
    shards.merge(out / "visualprocessbench.scores.jsonl")
    monkeypatch.setattr(stepeval, "prm_scorer", lambda prm: pytest.fail("the rerun must not score"))
    again = run_step_eval(parse_args(StepEvalConfig, eval_args(tmp_path / "split", trained_prm, "--resume")))
    scores = "runs/stepeval/dreamprm/visualprocessbench.scores.jsonl"
    assert (tmp_path / "split" / scores).read_bytes() == (tmp_path / "one" / scores).read_bytes()
    assert again["overall"] == one["overall"] and again["scoring"]["resumed"] == again["scoring"]["solutions"]
