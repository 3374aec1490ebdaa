"""Best-of-N (stage 8): aggregations, baselines and ties on hand-computed examples; the fast scorer against one
forward pass per prefix; the commands end to end on hand-made candidate files (tiny PRM, CPU)."""
import json
import math
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamprm import bon, tables
from dreamprm.bon import (Candidate, Question, ScoreConfig, SelectConfig, TreeScorer, answer_key,
                          cot_scores, evaluate, naive_scores, pick_best, question_picks, vote)
from dreamprm.cli import parse_args
from dreamprm.prm import PRM, Sample
from dreamprm.tables import TablesConfig
from dreamprm.samples import response_sample

ROOT = Path(__file__).resolve().parents[1]
sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
logit = lambda p: math.log(p / (1 - p))  # noqa: E731


def resp(*steps, answer="1"):
    return "".join(f"Step {i}: {s}\n\n" for i, s in enumerate(steps, 1)) + f"Final answer: {answer}"


# --- aggregation, selection and ties -----------------------------------------------------------------------

A, B, C = [0.9, 0.9, 0.1], [0.6, 0.6, 0.6], [0.99, 0.2]


@pytest.mark.parametrize("how, expected, winner", [
    ("mean_log_odds", [sig(sum(map(logit, s)) / len(s)) for s in (A, B, C)], 2),
    ("sum_log_odds", [sig(sum(map(logit, s))) for s in (A, B, C)], 2),
    ("mean", [1.9 / 3, 0.6, 1.19 / 2], 0),
    ("min", [0.1, 0.6, 0.2], 1),
    ("max", [0.9, 0.6, 0.99], 2),
    ("prod", [0.081, 0.216, 0.198], 1),
    ("last", [0.1, 0.6, 0.2], 1),
])
def test_each_aggregation_by_hand(how, expected, winner):
    got = cot_scores([A, B, C], how)
    assert got == pytest.approx(expected, abs=1e-9)
    assert pick_best(got) == winner


def test_ties_go_to_the_lowest_sample_index_and_no_steps_rank_last():
    assert pick_best([0.3, 0.7, 0.7]) == 1
    assert pick_best([None, 0.1, None]) == 1
    assert pick_best([None, None]) == 0  # nobody has steps: the first candidate
    assert cot_scores([None, [0.5], [0.5]], "mean") == [None, 0.5, 0.5]
    q = Question("q", "d", "Q?", None, None, [Candidate(s, "", False, "1") for s in (3, 5, 7)])
    picks = question_picks(q, [[0.2], [0.8, 0.9], [0.8, 0.9]], 3)
    assert {picks[f"prm:{h}"] for h in bon.AGGREGATIONS} == {1} and "orm" not in picks  # sample 5, not 7
    # the ORM proxy (the last step's score alone) can disagree with the mean of log-odds
    picks = question_picks(q, [A, B, C], 3)
    assert picks["prm:last"] == 1 and picks["prm:mean_log_odds"] == 2
    # a trained ORM: one score per candidate, the same tie rule, no PRM methods
    picks = question_picks(q, [[0.2], [0.8], [0.8]], 3, unit="response")
    assert picks["orm"] == 1 and not any(m.startswith("prm:") for m in picks)
    assert question_picks(q, [None, [0.1], None], 3, unit="response")["orm"] == 1  # unscored rank last


def test_the_released_selection_rules_behind_switches():
    """--ties last: the released code's `>=` (the last of equal candidates); --stepless neutral: its aggregate 0
    (log-odds of 0.5) for a candidate without steps, which can then beat scored candidates below 0.5."""
    assert pick_best([0.3, 0.7, 0.7], "last") == 2 and pick_best([None, 0.1, None], "last") == 1
    q = Question("q", "d", "Q?", None, None, [Candidate(s, "", s == 0, "1") for s in range(3)])
    scores = {"q": {0: [], 1: [0.3, 0.4], 2: [0.3, 0.4]}}
    pick = lambda **kw: evaluate({"q": q}, scores, [3], **kw)[1][0]["sample"]  # noqa: E731
    assert pick() == 1 and pick(ties="last") == 2
    assert pick(stepless="neutral") == 0 and pick(stepless="neutral", ties="last") == 0
    scores["q"][1] = [0.6]  # above 0.5: a scored candidate wins again
    assert pick(stepless="neutral") == 1


def test_self_consistency_normalises_answers_and_breaks_ties_by_first_answer():
    opts = ["3", "4", "5"]
    assert answer_key("B", opts) == answer_key("(B)", opts) == answer_key("4", opts) == ("choice", "B")
    assert answer_key("1,000", None) == answer_key("1000.0", None) == ("number", 1000.0)
    assert answer_key("The cat.", None) == answer_key("cat", None) == ("text", "cat")
    assert answer_key(None) is None and answer_key("  ") is None
    keys = [answer_key(a, opts) for a in ("C", "B", "(B)", "4", "C")]
    assert vote(keys) == 1  # B x3 beats C x2; its first candidate
    assert vote([("n", 1), ("n", 2), ("n", 2), ("n", 1)]) == 0  # 2 - 2: the answer seen first
    assert vote([None, None, ("n", 5)]) == 2  # no answer casts no vote
    assert vote([None, None]) == 0


def _cands(tf, answers, no_steps=()):
    return [Candidate(s, "no steps here" if s in no_steps else resp("x"), t, a)
            for s, (t, a) in enumerate(zip(tf, answers))]


def test_baselines_and_n_subsets_by_hand():
    qs = {"q1": Question("q1", "d", "Q1", None, None, _cands([False, True, False, True], ["1", "2", "1", "2"], {2})),
          "q2": Question("q2", "d", "Q2", None, None, _cands([True, False], ["7", "7.0"])),  # fewer than N
          "q3": Question("q3", "d", "Q3", None, None, _cands([False, True], [None, "x"]))}  # not scored
    scores = {"q1": {0: [0.2], 1: [0.9, 0.8], 2: [], 3: [0.9, 0.8]}, "q2": {0: [0.1], 1: [0.9]},
              "ghost": {0: [0.5]}}
    res, selected, counts = evaluate(qs, scores, [1, 2, 4])
    acc = res["accuracy"]
    third = 100 / 3
    assert res["total"] == 3
    assert acc["prm:mean_log_odds"] == pytest.approx({"1": third, "2": third, "4": third})
    assert acc["prm:last"] == pytest.approx({"1": third, "2": third, "4": third})
    assert acc["self_consistency"] == pytest.approx({"1": third, "2": 2 * third, "4": 2 * third})
    assert acc["random"] == pytest.approx({"1": third, "2": 50, "4": 50})
    assert acc["oracle"] == pytest.approx({"1": third, "2": 100, "4": 100})
    assert acc["base"] == pytest.approx({"1": 50, "2": 50, "4": 50})
    assert [s["sample"] for s in selected] == [1, 1, 0]  # q1: samples 1 and 3 tie -> 1
    assert selected[0]["picks"] == {"orm_proxy": 1, "self_consistency": 0}  # the last step's pick: not `orm`
    assert counts["questions with fewer than 4 candidates"] == 2
    assert counts["candidates without steps (rank last for the PRM)"] == 1
    assert counts["questions without scores (the lowest sample index is picked)"] == 1
    assert counts["scored ids not among the candidates (ignored)"] == 1
    # the same questions scored by an ORM, one score per candidate: only the method `orm`
    orm = {"q1": {0: [0.2], 1: [0.3], 2: [], 3: [0.9]}, "q2": {0: [0.8], 1: [0.3]}}
    res, selected, counts = evaluate(qs, orm, [1, 2, 4], unit="response")
    assert set(res["accuracy"]) == {"orm", "self_consistency", "random", "oracle", "base"}
    assert res["accuracy"]["orm"] == pytest.approx({"1": third, "2": 2 * third, "4": 2 * third})
    assert [(s["method"], s["sample"], s["score"]) for s in selected] == [("orm", 3, 0.9), ("orm", 0, 0.8),
                                                                          ("orm", 0, None)]
    assert selected[0]["picks"] == {"orm": 3, "self_consistency": 0}
    assert counts["candidates without a final answer (rank last for the ORM)"] == 1  # q1's "no steps here"
    # a question file: its questions without candidates count as wrong, unknown ids are left out
    qs["stray"] = Question("stray", "d", "Q?", None, None, _cands([True], ["1"]))
    res, _, counts = evaluate(qs, scores, [4], expected={"q1", "q2", "q3", "q4"})
    assert res["total"] == 4 and res["accuracy"]["prm:mean_log_odds"]["4"] == pytest.approx(25)
    assert counts["unknown question ids (left out)"] == 1
    assert counts["questions without candidates (counted wrong)"] == 1
    # no scores at all: baselines only
    res, _, _ = evaluate(qs, None, [4])
    assert "prm:last" not in res["accuracy"] and "self_consistency" in res["accuracy"]


# --- the fast scorer against one forward pass per prefix --------------------------------------------------

@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(1)
    paths = []
    for k, (h, w) in enumerate([(200, 300), (64, 90)]):
        p = d / f"im{k}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("fmt", ["paper", "stepwise"])
def test_fast_scorer_equals_one_prefix_at_a_time(tiny_models, image_files, fmt):
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32", fmt)
    torch.manual_seed(0)
    torch.nn.init.normal_(prm.head.weight, std=0.05)  # spread the scores so that agreement means something
    q1, q2, q3 = "How many squares?", "Which option is right? (A) 3 (B) 4", "What is 2 + 2?"
    r = [resp("Count the squares.", "There are 3 of them.", answer="3"),
         resp("Count the squares.", "I see four, maybe five.", "So 4.", answer="4"),
         resp("Look.", answer="B"), resp("Add 2 and 2 to get 4, clearly.", "Done.", answer="4")]
    samples = [response_sample(q1, r[0], image_files[0]), response_sample(q2, r[2], image_files[1]),
               response_sample(q1, r[1], image_files[0]), response_sample(q3, r[3], None),
               response_sample(q1, r[0], image_files[0]),  # a repeated candidate shares every token
               response_sample(q3, r[0], None)]
    fast = TreeScorer(prm).score(samples)
    ref = naive_scores(prm, samples)
    assert fast.shape == ref.shape == (sum(len(s.prefixes) for s in samples),)
    assert ref.std() > 1e-3
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=0)
    with torch.no_grad():  # and the training encoder agrees (stepwise: prefix tokens nest in these responses)
        torch.testing.assert_close(prm.score(samples), ref, atol=1e-4, rtol=0)


# --- the commands end to end -------------------------------------------------------------------------------

def write_candidates(root: Path, image: str) -> None:
    """mathvista: q1 full (one candidate without steps), q2 only 2 candidates, q3 an unknown id, q4 a missing
    image; mmstar: one question. Candidate 1 of q1 is right and has the same answer as candidate 3."""
    (root / "runs/rollouts").mkdir(parents=True)
    (root / "data").mkdir()
    recs = []
    for s in range(4):
        text = "I just know it. Final answer: B" if s == 2 else resp("Look at the image.", f"Try {s}.",
                                                                       answer="AB"[s % 2])
        recs.append({"id": "q1", "sample": s, "response": text, "input": "Pick (A) 1 (B) 2", "true_false": s % 2 == 1,
                     "image_path": image, "options": ["1", "2"], "answer": "AB"[s % 2], "dataset": "mathvista"})
    for s in range(2):
        recs.append({"id": "q2", "sample": s, "response": resp("Add.", answer=str(s + 3)), "input": "1 + 2?",
                     "true_false": s == 0, "image_path": None, "answer": str(s + 3)})
    recs.append({"id": "q3", "sample": 0, "response": resp("Hm."), "input": "?", "true_false": True})
    recs.append({"id": "q4", "sample": 0, "response": resp("Hm."), "input": "?", "true_false": False,
                 "image_path": "images/gone.png"})
    (root / "runs/rollouts/mathvista.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (root / "data/mathvista.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in ("q1", "q2", "q4", "q5")))
    mm = [{"id": 0, "sample": s, "response": resp("See.", "Think.", answer="C"), "input": "Options: A, B, C",
           "true_false": True} for s in range(3)]
    (root / "runs/rollouts/mmstar.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mm))


def run_args(root, prm, *extra):
    # q4's missing image skips 1 of mathvista's 8 records: over the default ceiling of 10 %
    return ["--path", str(root), "--prm", str(prm), "--gpu", "cpu", "--benchmarks", "mathvista,mmstar,wemath",
            "--questions", "data/{benchmark}.jsonl", "--n", "1,2,4", "--max_skip_fraction", "0.2", *extra]


def test_score_select_tables_end_to_end_with_resume(tmp_path, tiny_models, image_files, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    write_candidates(tmp_path, image_files[1])
    (tmp_path / "data/mmstar.jsonl").write_text('{"id": 0}\n')
    # a run killed in its third batch: q1 (two batches of at most 2 candidates) is written, q2 is not ...
    calls = []

    def dying(samples):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(samples)

    # a trained PRM: backbone + head saved together, so every run loads the same head
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32", "paper")
    torch.nn.init.normal_(prm.head.weight, std=0.05)
    prm_dir = tmp_path / "prm"
    prm.save_pretrained(prm_dir)
    real = TreeScorer(prm).score
    cfg = parse_args(ScoreConfig, run_args(tmp_path, prm_dir, "--batch_size", "2"))
    questions, _ = bon.load_candidates(cfg.candidates_path("mathvista"), tmp_path)
    out = tmp_path / "runs/bon/dreamprm/mathvista.scores.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with bon.AppendWriter(out, key=lambda r: r["id"], resume=False) as w:
            bon.score_questions(questions, dying, w, 2, {"prm": str(prm_dir), "format": "paper"})
    assert len(out.read_text().splitlines()) == 1
    with open(out, "a") as f:
        f.write('{"id": "q9", "cand')  # and a line torn by the kill
    with pytest.raises(FileExistsError):  # without --resume nothing is overwritten
        bon.score_benchmarks(cfg)
    # ... resumes, and gives what an uninterrupted run gives
    cfg = parse_args(ScoreConfig, run_args(tmp_path, prm_dir, "--batch_size", "2", "--resume"))
    report = bon.score_benchmarks(cfg)
    assert report["mathvista"]["skipped"]["kinds"]["missing image"]["count"] == 1
    assert report["mathvista"]["skipped"]["kinds"]["missing image"]["first"][0].startswith(
        f"{cfg.candidates_path('mathvista')}:8 ")
    assert report["mathvista"]["questions scored"] == 3 and report["mathvista"]["resumed"] == 1
    assert "no candidate file" in report["wemath"]["left out"]
    fresh = parse_args(ScoreConfig, run_args(tmp_path, prm_dir, "--name", "fresh", "--no_select"))
    bon.score_benchmarks(fresh)
    by_id = lambda p: {r["id"]: r for r in map(json.loads, p.read_text().splitlines())}  # noqa: E731
    resumed, whole = by_id(out), by_id(tmp_path / "runs/bon/fresh/mathvista.scores.jsonl")
    assert sorted(resumed) == sorted(whole) == ["q1", "q2", "q3"]
    for qid, rec in whole.items():
        for a, b in zip(resumed[qid]["candidates"], rec["candidates"]):
            assert a["sample"] == b["sample"] and a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    assert [len(c["scores"]) for c in whole["q1"]["candidates"]] == [2, 2, 0, 2]
    # a resume with another PRM format is refused
    with pytest.raises(bon.DataError):
        bon.score_benchmarks(parse_args(ScoreConfig, run_args(tmp_path, prm_dir, "--resume",
                                                              "--input_format", "stepwise")))

    res = json.loads((tmp_path / "runs/bon/dreamprm/results.json").read_text())
    mv = res["benchmarks"]["mathvista"]
    assert mv["total"] == 4  # q1 q2 q4 q5 of the question file; q3 is unknown
    c = mv["counts"]
    assert c["unknown question ids (left out)"] == 1 and c["questions without candidates (counted wrong)"] == 1
    assert c["candidates without steps (rank last for the PRM)"] == 1
    assert c["questions with fewer than 4 candidates"] == 2  # q2, q4
    assert c["questions without scores (the lowest sample index is picked)"] == 1  # q4
    acc = mv["accuracy"]
    assert acc["oracle"]["4"] == pytest.approx(50) and acc["base"]["4"] == pytest.approx(25)
    assert acc["self_consistency"]["4"] == pytest.approx(25)  # q1: A x2 vs B x2 -> A (sample 0, wrong); q2 right
    sel = [json.loads(x) for x in (tmp_path / "runs/bon/dreamprm/mathvista.selected.jsonl").read_text().splitlines()]
    assert [s["id"] for s in sel] == ["q1", "q2", "q4"] and sel[0]["sample"] != 2  # no steps: never the PRM pick
    assert res["benchmarks"]["mmstar"]["accuracy"]["prm:mean_log_odds"]["2"] == 100

    # tables: this run beside the paper's numbers, the ablation, the figure
    shutil.copytree(tmp_path / "runs/bon/fresh", tmp_path / "runs/bon/vanilla")  # (a rename would move its lock)
    bon.select_benchmarks(parse_args(SelectConfig, ["--path", str(tmp_path), "--name", "vanilla",
                                                    "--benchmarks", "mathvista"]))
    written = tables.write_tables(parse_args(TablesConfig, ["--path", str(tmp_path), "--main", "dreamprm"]))
    md = (tmp_path / "runs/bon/tables/table1.md").read_text()
    assert "| DreamPRM |" in md and "(68.9)" in md and "(62.3)" in md and "| MathVista | MMStar |" in md
    tex = (tmp_path / "runs/bon/tables/table1.tex").read_text()
    assert "\\begin{tabular}" in tex and "Vanilla PRM &" in tex
    abl = (tmp_path / "runs/bon/tables/ablation_dreamprm.md").read_text()
    assert all(f"| {h}" in abl for h in bon.AGGREGATIONS)
    assert (tmp_path / "runs/bon/tables/ablation_vanilla.tex").is_file()
    assert written["figure"] == tmp_path / "figs/bon_scaling.png" and written["figure"].stat().st_size > 5000

    # selection again from the same scores, without the PRM: other N, another main aggregation
    monkeypatch.setattr(bon.PRM, "from_pretrained", None)
    again = ["--path", str(tmp_path), "--benchmarks", "mathvista", "--n", "1,3", "--aggregation", "min"]
    with pytest.raises(FileExistsError):  # results.json exists: rebuilt only with --resume
        bon.select_benchmarks(parse_args(SelectConfig, again))
    res2 = bon.select_benchmarks(parse_args(SelectConfig, [*again, "--resume"]))
    assert set(res2["benchmarks"]["mathvista"]["accuracy"]["prm:min"]) == {"1", "3"}


def test_unit_response_scores_each_whole_candidate_once(tmp_path, tiny_models, image_files, monkeypatch):
    """An ORM run: one score per candidate, equal to scoring Sample(image, question, [response]) directly; a
    candidate without a final answer is not scored and ranks last."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    write_candidates(tmp_path, image_files[1])
    (tmp_path / "data/mmstar.jsonl").write_text('{"id": 0}\n')
    with open(tmp_path / "runs/rollouts/mathvista.jsonl", "a") as f:  # q2 gets a candidate without a final answer
        f.write(json.dumps({"id": "q2", "sample": 2, "response": "Step 1: Add.\n\nI give up.", "input": "1 + 2?",
                            "true_false": False}) + "\n")
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32", "paper")
    torch.manual_seed(0)
    torch.nn.init.normal_(prm.head.weight, std=0.05)
    prm.save_pretrained(tmp_path / "orm_prm")
    args = run_args(tmp_path, tmp_path / "orm_prm", "--unit", "response", "--name", "orm", "--batch_size", "3")
    bon.score_benchmarks(parse_args(ScoreConfig, args))
    lines = [json.loads(x) for x in (tmp_path / "runs/bon/orm/mathvista.scores.jsonl").read_text().splitlines()]
    recs = {(r["id"], r["sample"]): r for r in map(json.loads, (tmp_path / "runs/rollouts/mathvista.jsonl").open())}
    got, want = {}, []
    for q in lines:
        assert q["unit"] == "response" and q["format"] == "paper"
        for c in q["candidates"]:
            r = recs[(q["id"], c["sample"])]
            if (q["id"], c["sample"]) == ("q2", 2):
                assert c["scores"] == []
                continue
            assert len(c["scores"]) == 1  # also the candidate without steps (q1, sample 2)
            got[(q["id"], c["sample"])] = c["scores"][0]
            want.append(Sample(r.get("image_path"), r["input"], [r["response"]]))
    assert len(got) == 7
    ref = naive_scores(prm, want).tolist()
    assert list(got.values()) == pytest.approx(ref, abs=1e-4)
    res = json.loads((tmp_path / "runs/bon/orm/results.json").read_text())
    mv = res["benchmarks"]["mathvista"]
    assert res["unit"] == mv["unit"] == "response" and "orm" in mv["accuracy"]
    assert not any(m.startswith("prm:") for m in mv["accuracy"])
    assert mv["counts"]["candidates without a final answer (rank last for the ORM)"] == 1
    sel = [json.loads(x) for x in (tmp_path / "runs/bon/orm/mathvista.selected.jsonl").read_text().splitlines()]
    q1 = [c["scores"][0] for q in lines if q["id"] == "q1" for c in q["candidates"]]
    assert sel[0]["method"] == "orm" and sel[0]["sample"] == pick_best(q1) and sel[0]["score"] == max(q1)
    with pytest.raises(bon.DataError, match="per response"):  # its scores are not continued per step
        bon.score_benchmarks(parse_args(ScoreConfig, run_args(tmp_path, tmp_path / "orm_prm", "--name", "orm",
                                                              "--resume")))


def _run(name, unit, acc):
    """A results.json of one run on two benchmarks: `acc` method -> (mathvista, mmstar) accuracy at N = 8."""
    return {"run": name, "aggregation": "mean_log_odds", "n": [8], "unit": unit,
            "benchmarks": {b: {"accuracy": {m: {"8": v[k]} for m, v in acc.items()}} for k, b in
                           enumerate(("mathvista", "mmstar"))}}


def test_table1_orm_row_is_the_trained_orm_and_the_proxy_is_labelled_apart(tmp_path, capsys):
    base = {"base": (50, 40), "self_consistency": (55, 45), "oracle": (90, 80), "random": (50, 40)}
    results = {"dreamprm": _run("dreamprm", "step", {**base, "prm:mean_log_odds": (60, 50), "prm:last": (52, 42)}),
               "vanilla": _run("vanilla", "step", {**base, "prm:mean_log_odds": (58, 48), "prm:last": (51, 41)}),
               "orm": _run("orm", "response", {**base, "orm": (57, 47)})}
    rows = lambda md: {r.split(" | ")[0].strip("| "): r for r in md.splitlines() if r.startswith("| ")}  # noqa
    md, tex = tables.table1(results)
    t = rows(md)
    assert t["ORM"] == "| ORM | 57.0 (65.3) | 47.0 (60.1) | 52.0 (62.7) |"
    proxy = "ORM proxy: DreamPRM last-step score (ablation)"
    assert t[proxy] == f"| {proxy} | 52.0 (—) | 42.0 (—) | 47.0 (—) |"
    assert list(t).index(proxy) == list(t).index("ORM") + 1 and "ORM proxy" in md.split("\n\n")[0]
    assert "ORM proxy: DreamPRM last-step score (ablation) &" in tex
    t = rows(tables.table1(results, orm_proxy="vanilla")[0])
    assert t["ORM proxy: vanilla last-step score (ablation)"].startswith("| ORM proxy: vanilla last-step score "
                                                                        "(ablation) | 51.0 (—)")
    assert not any("proxy" in k for k in rows(tables.table1(results, orm_proxy="none")[0]))
    # without a trained ORM the ORM row is empty: the proxy never stands in for it
    del results["orm"]
    t = rows(tables.table1(results)[0])
    assert t["ORM"] == "| ORM | — (65.3) | — (60.1) | — (62.7) |" and proxy in t
    # write_tables finds the ORM run among the runs, by name
    results["orm"] = _run("orm", "response", {**base, "orm": (57, 47)})
    for name, r in results.items():
        (tmp_path / "bon" / name).mkdir(parents=True)
        (tmp_path / "bon" / name / "results.json").write_text(json.dumps(r))
    tables.write_tables(parse_args(TablesConfig, ["--path", str(tmp_path), "--runs", "bon", "--figs", "figs"]))
    assert "| ORM | 57.0 (65.3) |" in (tmp_path / "bon/tables/table1.md").read_text()
    assert not (tmp_path / "bon/tables/ablation_orm.md").exists()
    assert "warning" not in capsys.readouterr().out


@pytest.mark.parametrize("script, cls", [("score.py", ScoreConfig), ("pick.py", SelectConfig),
                                         ("tables.py", TablesConfig)])
def test_every_command_has_help(script, cls, capsys):
    ns = runpy.run_path(str(ROOT / "BoN" / script), run_name="imported")  # the entry point imports cleanly
    assert cls in ns.values()
    with pytest.raises(SystemExit) as e:
        parse_args(cls, ["--help"])
    assert e.value.code == 0 and "--path" in capsys.readouterr().out
    launcher = {"score.py": "06_bon.sh", "tables.py": "07_tables.sh"}.get(script)
    if launcher:
        assert f"BoN/{script}" in (ROOT / "scripts" / launcher).read_text()


def test_sharded_scoring_merged_then_rerun_equals_one_process(tmp_path, tiny_models, image_files, monkeypatch):
    """BoN/score.py --shard i/n on each benchmark's i-th block of questions; after the merge the unsharded
    command resumes every score (no PRM call) and selects: the same files as one process wrote."""
    from dreamprm import shards

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32", "paper")
    torch.nn.init.normal_(prm.head.weight, std=0.05)
    prm.save_pretrained(tmp_path / "prm")
    for d in ("one", "split"):
        write_candidates(tmp_path / d, image_files[1])
        (tmp_path / d / "data/mmstar.jsonl").write_text('{"id": 0}\n')
    bon.score_benchmarks(parse_args(ScoreConfig, run_args(tmp_path / "one", tmp_path / "prm")))
    split = run_args(tmp_path / "split", tmp_path / "prm")
    for i in range(3):
        bon.score_benchmarks(parse_args(ScoreConfig, [*split, "--shard", f"{i}/3"]))
    out = tmp_path / "split/runs/bon/dreamprm"
    assert not (out / "scoring.json").exists()  # a shard neither reports nor selects
    for bench in ("mathvista", "mmstar"):
        shards.merge(out / f"{bench}.scores.jsonl")
    monkeypatch.setattr(bon, "load_prm", lambda *a, **k: pytest.fail("the rerun must not load the PRM"))
    bon.score_benchmarks(parse_args(ScoreConfig, [*split, "--resume"]))
    one = tmp_path / "one/runs/bon/dreamprm"
    for f in sorted(p.name for p in one.iterdir() if p.suffix in (".jsonl", ".json") and p.name != "scoring.json"):
        # the same bytes but for the run's own directory, which results.json names
        assert (out / f).read_text().replace("/split/", "/one/") == (one / f).read_text(), f
