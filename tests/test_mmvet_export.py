"""BoN/export_mmvet.py: selections and candidates -> results files of the official MM-Vet grader."""
import json

import pytest

from conftest import load_script
from dreamprm.bon import SelectConfig, select_benchmarks
from dreamprm.io import DataError, write_jsonl
from dreamprm.mmvet import grader_answer, grader_key

EXPLAIN = "The meme mocks the two names.\n\nIceland is green, Greenland is icy."
CANDIDATES = [  # as inference/mmvet.py writes them (the fields BoN uses)
    {"id": "v1_0", "sample": 0, "response": "Step 1: Solve.\n\nFinal answer: x = 3", "input": "What is x?",
     "true_false": False, "answer": "x = 3", "dataset": "MMVet", "options": None},
    {"id": "v1_0", "sample": 1, "response": "Step 1: Solve.\n\n**Final answer:** x = -1 or x = -5",
     "input": "What is x?", "true_false": True, "answer": "x = -1 or x = -5", "dataset": "MMVet", "options": None},
    {"id": "v1_1", "sample": 0, "response": f"Step 1: Read the meme.\n\nFinal answer: {EXPLAIN}",
     "input": "Explain the meme.", "true_false": True, "answer": "The meme mocks the two names.",
     "dataset": "MMVet", "options": None},
    {"id": "v1_1", "sample": 1, "response": "Step 1: Read the meme.\nIt is about | two islands", "input": "Explain.",
     "true_false": False, "answer": None, "dataset": "MMVet", "options": None},
]  # v1_2 has no candidate (e.g. its image was missing at inference)


def selected(qid, sample, orm, sc, method="prm:mean_log_odds"):
    # the shape dreamprm.bon writes to runs/bon/<name>/<benchmark>.selected.jsonl
    return {"id": qid, "dataset": "MMVet", "method": method, "sample": sample, "answer": None, "true_false": True,
            "score": 0.7, "n_candidates": 2, "picks": {"orm_proxy": orm, "self_consistency": sc}}


@pytest.fixture
def root(tmp_path):
    write_jsonl(tmp_path / "data/mmvet.jsonl", [
        {"id": f"v1_{i}", "input": "q", "image_path": f"data/images/mmvet/v1_{i}.png", "ground_truth": "a",
         "dataset": "MMVet"} for i in range(3)])
    write_jsonl(tmp_path / "runs/rollouts/mmvet.jsonl", CANDIDATES)
    write_jsonl(tmp_path / "runs/bon/dreamprm/mmvet.selected.jsonl", [selected("v1_0", 1, 0, 0), selected("v1_1", 0, 1, 0)])
    write_jsonl(tmp_path / "runs/bon/vanilla/mmvet.selected.jsonl", [selected("v1_0", 0, 0, 0), selected("v1_1", 1, 1, 0)])
    write_jsonl(tmp_path / "runs/bon/dreamprm/mathvista.selected.jsonl", [selected("1", 0, 0, 0)])  # not MM-Vet
    return tmp_path


def export(root, *extra):
    return load_script("BoN/export_mmvet.py").main(["--path", str(root), "--grader_questions", "0", *extra])


def read_as_the_grader_does(path, keys):
    """The official evaluator: json.load, then results[id] for every id of mm-vet.json, joined into a table row."""
    with open(path) as f:
        results = json.load(f)
    assert isinstance(results, dict)
    for key in keys:
        row = " | ".join(["question", "gt <AND> gt", results[key], ""])  # a missing key or a non-string fails here
        assert isinstance(results[key], str) and row
    return results


def test_one_grader_file_per_method_with_every_question(root, capsys):
    written = export(root)
    assert sorted(written) == ["dreamprm.json", "dreamprm_orm_proxy.json", "dreamprm_self_consistency.json",
                               "vanilla.json", "vanilla_orm_proxy.json", "vanilla_self_consistency.json"]
    keys = ["v1_0", "v1_1", "v1_2"]
    files = {name: read_as_the_grader_does(path, keys) for name, path in written.items()}
    assert all(list(r) == keys for r in files.values())  # every question, nothing else
    # the PRM's pick: the text after the last marker, kept whole to the end (both paragraphs)
    assert files["dreamprm.json"] == {"v1_0": "x = -1 or x = -5", "v1_1": EXPLAIN, "v1_2": ""}
    # no Final answer: the whole response, as the paper's code exported it
    assert files["vanilla.json"]["v1_1"] == CANDIDATES[3]["response"]
    assert files["dreamprm_orm_proxy.json"]["v1_1"] == CANDIDATES[3]["response"]
    assert files["dreamprm_self_consistency.json"] == {"v1_0": "x = 3", "v1_1": EXPLAIN, "v1_2": ""}
    log = capsys.readouterr().out
    assert "dreamprm.json: 3 questions; no candidate (empty answer) 1" in log
    assert "vanilla.json: 3 questions; no candidate (empty answer) 1, responses without a final answer 1" in log


def test_all_candidates_whole_responses_and_the_full_key_set(root):
    written = export(root, "--names", "dreamprm", "--all_candidates", "--text", "response")
    assert "candidate_0.json" in written and "candidate_1.json" in written and "vanilla.json" not in written
    c1 = read_as_the_grader_does(written["candidate_1.json"], ["v1_0", "v1_1", "v1_2"])
    assert c1 == {"v1_0": CANDIDATES[1]["response"], "v1_1": CANDIDATES[3]["response"], "v1_2": ""}
    # By default every key the grader looks up (v1_0 .. v1_217) is present, so it never stops on a missing one.
    full = load_script("BoN/export_mmvet.py").main(["--path", str(root), "--names", "dreamprm", "--out", "full"])
    results = read_as_the_grader_does(full["dreamprm.json"], [f"v1_{i}" for i in range(218)])
    assert len(results) == 218 and results["v1_0"] == "x = -1 or x = -5" and results["v1_217"] == ""


def test_selections_written_by_bon_pick_export(root):
    """The real selection writer (no scores: self-consistency only) feeds the exporter."""
    select_benchmarks(SelectConfig(path=str(root), name="base", benchmarks="mmvet", n="1,2"))
    written = export(root, "--names", "base")
    assert list(written) == ["base_self_consistency.json"]
    assert read_as_the_grader_does(written["base_self_consistency.json"], ["v1_0", "v1_1", "v1_2"]) == {
        "v1_0": "x = 3", "v1_1": EXPLAIN, "v1_2": ""}


def test_a_trained_orm_run_is_exported_under_its_own_name(root):
    orm = selected("v1_0", 0, 0, 0, method="orm")
    orm["picks"] = {"orm": 0, "self_consistency": 0}  # what an ORM run (--unit response) writes
    write_jsonl(root / "runs/bon/orm/mmvet.selected.jsonl", [orm])
    written = export(root, "--names", "orm")
    assert sorted(written) == ["orm.json", "orm_self_consistency.json"]
    assert read_as_the_grader_does(written["orm.json"], ["v1_0"])["v1_0"] == "x = 3"


def test_keys_answers_and_errors(root):
    assert grader_key("v1_12") == grader_key(12) == grader_key("12") == "v1_12"
    with pytest.raises(DataError, match="no MM-Vet v1 id"):
        grader_key("mmvet-3")
    assert grader_answer("Final answer: 4") == ("4", True)
    assert grader_answer("no marker at all ") == ("no marker at all", False)
    assert grader_answer("Step 1: x\nFinal answer: 4", "response") == ("Step 1: x\nFinal answer: 4", True)
    write_jsonl(root / "runs/bon/broken/mmvet.selected.jsonl", [selected("v1_0", 7, 0, 0)])
    with pytest.raises(DataError, match="selected sample 7 is not in the candidate file"):
        export(root, "--names", "broken")
    with pytest.raises(DataError, match="no selection file"):
        export(root, "--names", "missing")


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        load_script("BoN/export_mmvet.py").main(["--help"])
    assert e.value.code == 0 and "--all_candidates" in capsys.readouterr().out
