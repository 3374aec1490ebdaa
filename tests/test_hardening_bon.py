"""Issue 12 for the best-of-N stages (BoN/score.py, pick.py, tables.py, export_mmvet.py): every bad input kind
is a counted skip (kind, file:line, the good questions all there) or a one-line DataError; NaN never reaches a
selection; paths resolve against --path; a failed start blocks nothing; one writer per output."""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_script
from dreamprm import bon
from dreamprm.bon import ScoreConfig, SelectConfig
from dreamprm.cli import parse_args
from dreamprm.io import AppendWriter, DataError, write_jsonl
from dreamprm.prm import PRM
from dreamprm.tables import TablesConfig, write_tables

ROOT = Path(__file__).resolve().parents[1]
CAND = "runs/rollouts/mathvista.jsonl"
N_Q, N_C = 12, 2  # one bad record of 24 (or one bad question of 12) stays under the 10 % ceiling


def resp(*steps, answer="1"):
    return "".join(f"Step {i}: {s}\n\n" for i, s in enumerate(steps, 1)) + f"Final answer: {answer}"


def write_world(root: Path, n_q: int = N_Q, n_c: int = N_C) -> Path:
    """mathvista candidates: question q<k> (image images/q<k>.png) has samples 0..n_c-1; sample s sits on line
    k * n_c + s + 1 and is right when s == k % n_c."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    recs = []
    for k in range(n_q):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"images/q{k}.png")
        recs += [{"id": f"q{k}", "sample": s, "response": resp("Look.", f"Count {s + k}.", answer=str(s)),
                  "input": f"Question {k}?", "true_false": s == k % n_c, "image_path": f"images/q{k}.png",
                  "answer": str(s), "dataset": "mathvista"} for s in range(n_c)]
    write_jsonl(root / CAND, recs)
    return root / CAND


def set_line(path: Path, lineno: int, data: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = data
    path.write_bytes(b"\n".join(lines))


def edit_record(path: Path, lineno: int, **changes) -> None:
    r = json.loads(path.read_bytes().split(b"\n")[lineno - 1])
    for k, v in changes.items():
        if v is ...:
            del r[k]
        else:
            r[k] = v
    set_line(path, lineno, json.dumps(r).encode())


def no_nan(text: str):
    def refuse(c):
        raise AssertionError(f"{c} in an output")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def prm_dir(tiny_models, tmp_path_factory):
    """A trained PRM (backbone + head saved together), so every load scores alike."""
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32", "paper")
    torch.manual_seed(0)
    torch.nn.init.normal_(prm.head.weight, std=0.05)
    out = tmp_path_factory.mktemp("bon_prm") / "prm"
    prm.save_pretrained(out)
    return out


def score_args(root, prm, *extra):
    return ["--path", str(root), "--prm", str(prm), "--gpu", "cpu", "--precision", "fp32", "--benchmarks", "mathvista",
            "--n", "1,2", *extra]


def read_jsonl(path: Path) -> list[dict]:
    return [no_nan(x) for x in path.read_text().splitlines()]


# --- BoN/score.py: candidate files --------------------------------------------------------------------------

def _image(root, k, how):
    p = root / f"images/q{k}.png"
    if how == "missing":
        p.unlink()
    elif how == "zero-byte":
        p.write_bytes(b"")
    elif how == "corrupt":
        p.write_bytes(b"\x89PNG\r\n\x1a\n but not really an image")
    elif how == "huge":
        Image.new("RGB", (64, 64), "red").save(p)  # 4,096 pixels > --max_image_pixels 2000; the others 1,024


# (case, kind, first bad line, records skipped, question lost with them, change, extra args)
SCORE_CASES = [
    ("malformed JSON line", "malformed JSON", 3, 1, None, lambda r, c: set_line(c, 3, b'{"id": "q1", "sample": 0,'), ()),
    ("non-UTF-8", "non-UTF-8 bytes", 4, 1, None, lambda r, c: set_line(c, 4, b'{"id": "q1", "input": "\xff"}'), ()),
    ("missing field", "missing field", 5, 1, None, lambda r, c: edit_record(c, 5, true_false=...), ()),
    ("bad label", "bad label", 6, 1, None, lambda r, c: edit_record(c, 6, true_false="maybe"), ()),
    ("wrong type", "wrong type", 7, 1, None, lambda r, c: edit_record(c, 7, input=5), ()),
    ("wrong sample type", "wrong type", 8, 1, None, lambda r, c: edit_record(c, 8, sample="one"), ()),
    ("missing image", "missing image", 11, 2, "q5", lambda r, c: _image(r, 5, "missing"), ()),
    ("zero-byte image", "zero-byte image", 11, 2, "q5", lambda r, c: _image(r, 5, "zero-byte"), ()),
    ("corrupt image", "unreadable image", 11, 2, "q5", lambda r, c: _image(r, 5, "corrupt"), ()),
    ("huge image", "image too large", 11, 2, "q5", lambda r, c: _image(r, 5, "huge"), ("--max_image_pixels", "2000")),
]


@pytest.mark.parametrize("case, kind, line, n, lost, change, extra", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_score_skips_and_counts_each_bad_candidate_kind(tmp_path, prm_dir, capsys, case, kind, line, n, lost,
                                                        change, extra):
    src = write_world(tmp_path)
    change(tmp_path, src)
    report = bon.score_benchmarks(parse_args(ScoreConfig, score_args(tmp_path, prm_dir, "--no_select", *extra)))
    out = tmp_path / "runs/bon/dreamprm"
    skipped = report["mathvista"]["skipped"]
    assert skipped["kinds"][kind]["count"] == n and skipped["skipped"] == n and skipped["read"] == N_Q * N_C
    assert skipped["kinds"][kind]["first"][0].split(" (")[0] == f"{src}:{line}"
    assert no_nan((out / "scoring.json").read_text())["benchmarks"]["mathvista"]["skipped"] == skipped
    assert f"{src}: skipped {n} of {N_Q * N_C} records: {kind} {n} (e.g. {src}:{line}" in capsys.readouterr().out
    scored = {r["id"] for r in read_jsonl(out / "mathvista.scores.jsonl")}
    assert scored == {f"q{k}" for k in range(N_Q)} - {lost}  # every good question is scored


def test_score_keeps_a_candidate_without_steps_unscored(tmp_path, prm_dir):
    src = write_world(tmp_path)
    edit_record(src, 1, response="I just know. Final answer: 0")
    report = bon.score_benchmarks(parse_args(ScoreConfig, score_args(tmp_path, prm_dir)))
    assert report["mathvista"]["candidates without steps"] == 1 and report["mathvista"]["skipped"]["skipped"] == 0
    q0 = next(r for r in read_jsonl(tmp_path / "runs/bon/dreamprm/mathvista.scores.jsonl") if r["id"] == "q0")
    assert [len(c["scores"]) for c in q0["candidates"]] == [0, 2]


@pytest.mark.parametrize("case, data, message", [
    ("empty", b"", "{src}: empty file"),
    ("malformed JSON array", b'[{"id": "q0"},\n{"id": ', "{src}:2: malformed JSON"),
    ("missing", None, "no candidate file for any of 'mathvista'"),
    ("flood", b"".join(b'{"id": "q%d"}\n' % k for k in range(5)), "over the ceiling --max_skip_fraction"),
])
def test_score_whole_file_errors_are_one_line_and_write_nothing(tmp_path, prm_dir, case, data, message):
    src = write_world(tmp_path)
    src.unlink() if data is None else src.write_bytes(data)
    with pytest.raises(DataError) as e:
        bon.score_benchmarks(parse_args(ScoreConfig, score_args(tmp_path, prm_dir)))
    assert message.format(src=src) in str(e.value) and "\n" not in str(e.value)
    out = tmp_path / "runs/bon/dreamprm"
    assert not [p.name for p in out.iterdir() if not p.name.endswith(".lock")]


def test_a_non_finite_model_score_stops_the_run_naming_the_question(tmp_path):
    src = write_world(tmp_path, n_q=3)
    questions, _ = bon.load_candidates(src, tmp_path)
    calls = []

    def scorer(samples):  # fine for the first question, NaN for the second
        calls.append(1)
        n = sum(len(s.prefixes) for s in samples)
        return torch.full((n,), 0.5 if len(calls) == 1 else float("nan"))

    out = tmp_path / "scores.jsonl"
    with pytest.raises(DataError, match=rf"{src}:\d+: the PRM scored step 1 of question 'q\d', sample 0, as nan"):
        with AppendWriter(out, key=lambda r: r["id"], resume=False) as w:
            bon.score_questions(questions, scorer, w, 2, {"prm": "p", "format": "paper"}, progress=False)
    assert len(read_jsonl(out)) == 1  # the question scored before is kept, nothing else is written


# --- relative paths, failed starts, announcements, resume counts --------------------------------------------

def test_prm_and_every_path_resolve_against_path_not_the_working_directory(tmp_path, prm_dir, monkeypatch, capsys):
    root = tmp_path / "root"
    write_world(root)
    (root / "models").mkdir()
    (root / "models/prm").symlink_to(prm_dir)  # "models/prm" is also shaped like a hub id "org/name"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    args = ["--path", str(root), "--gpu", "cpu", "--benchmarks", "mathvista", "--n", "1,2", "--out", "runs/bon/rel"]
    cfg = parse_args(ScoreConfig, [*args, "--prm", "models/prm"])
    assert bon.prm_location(cfg) == str(root / "models/prm")
    assert bon.prm_location(parse_args(ScoreConfig, [*args, "--prm", "Qwen/Qwen2-VL-2B-Instruct"])) == \
        "Qwen/Qwen2-VL-2B-Instruct"  # a hub id stays one
    # a wrong --prm fails before anything is written ...
    with pytest.raises(DataError, match=r"--prm runs/none/prm: no such directory .*resolves against --path"):
        bon.score_benchmarks(parse_args(ScoreConfig, [*args, "--prm", "runs/none/prm"]))
    (root / "empty_prm").mkdir()
    with pytest.raises(DataError, match="--prm empty_prm: cannot load a PRM from"):
        bon.score_benchmarks(parse_args(ScoreConfig, [*args, "--prm", "empty_prm"]))
    out = root / "runs/bon/rel"
    assert not [p.name for p in out.iterdir() if not p.name.endswith(".lock")]  # no scores file, no scoring.json
    capsys.readouterr()
    # ... so the corrected command runs without --resume
    report = bon.score_benchmarks(cfg)
    log = capsys.readouterr().out
    assert "PRM: device cpu, precision float32" in log and log.index("PRM: device") < log.index("questions scored")
    assert report["mathvista"]["questions scored"] == N_Q
    assert (out / "results.json").is_file() and not (tmp_path / "elsewhere/runs").exists()


def test_scoring_json_after_a_resume_counts_every_question(tmp_path, prm_dir):
    write_world(tmp_path)
    bon.score_benchmarks(parse_args(ScoreConfig, score_args(tmp_path, prm_dir, "--name", "whole")))
    whole = tmp_path / "runs/bon/whole"
    part = tmp_path / "runs/bon/part"
    part.mkdir(parents=True)
    lines = (whole / "mathvista.scores.jsonl").read_text().splitlines(keepends=True)
    (part / "mathvista.scores.jsonl").write_text("".join(lines[:5]))  # a run killed after 5 questions
    bon.score_benchmarks(parse_args(ScoreConfig, score_args(tmp_path, prm_dir, "--name", "part", "--resume")))
    a, b = (no_nan((d / "scoring.json").read_text())["benchmarks"]["mathvista"] for d in (whole, part))
    assert (a.pop("scored in this run"), a.pop("resumed"), b.pop("scored in this run"), b.pop("resumed")) == \
        (N_Q, 0, N_Q - 5, 5)
    assert a == b and a["questions scored"] == N_Q
    ra, rb = (no_nan((d / "results.json").read_text())["benchmarks"]["mathvista"] for d in (whole, part))
    assert ra["total"] == rb["total"] == N_Q and ra["counts"] == rb["counts"]
    assert ra["accuracy"] == rb["accuracy"]  # the same scores (copied), so the same picks


# --- BoN/pick.py: scores files ------------------------------------------------------------------------------

def write_scores(root: Path, name: str = "dreamprm") -> Path:
    """Hand-made scores: line k + 1 is question q<k>; sample 1 scores higher than sample 0."""
    path = root / f"runs/bon/{name}/mathvista.scores.jsonl"
    write_jsonl(path, [{"id": f"q{k}", "dataset": "mathvista", "prm": "p", "format": "paper", "unit": "step",
                        "candidates": [{"sample": s, "scores": [0.3 + 0.2 * s, 0.6]} for s in range(N_C)]}
                       for k in range(N_Q)])
    return path


def _scores_line(path, **scores):
    """Line 1 (q0) with other step scores of sample 0 (written as Python's json writes NaN and infinity)."""
    r = json.loads(path.read_text().splitlines()[0])
    r["candidates"][0].update(scores)
    set_line(path, 1, json.dumps(r).encode())


# (case, role, kind, line, change)
PICK_CASES = [
    ("NaN score", "scores", "not a finite number", 1, lambda c, s: _scores_line(s, scores=[float("nan"), 0.6])),
    ("infinite score", "scores", "not a finite number", 1, lambda c, s: _scores_line(s, scores=[float("inf")])),
    ("out-of-range score", "scores", "out of range", 1, lambda c, s: _scores_line(s, scores=[1.5, 0.6])),
    ("wrong-type score", "scores", "wrong type", 1, lambda c, s: _scores_line(s, scores=["0.9", 0.6])),
    ("wrong-type scores", "scores", "wrong type", 1, lambda c, s: _scores_line(s, scores=0.9)),
    ("missing sample", "scores", "missing field", 1,
     lambda c, s: set_line(s, 1, b'{"id": "q0", "candidates": [{"scores": [0.5]}]}')),
    ("malformed JSON line", "scores", "malformed JSON", 1, lambda c, s: set_line(s, 1, b'{"id": "q0", "cand')),
    ("non-UTF-8", "scores", "non-UTF-8 bytes", 1, lambda c, s: set_line(s, 1, b'{"id": "q0\xfe"}')),
    ("missing field", "scores", "missing field", 1, lambda c, s: set_line(s, 1, b'{"id": "q0"}')),
    ("bad label", "candidates", "bad label", 1, lambda c, s: edit_record(c, 1, true_false="yes please")),
]


@pytest.mark.parametrize("case, role, kind, line, change", PICK_CASES, ids=[c[0] for c in PICK_CASES])
def test_pick_skips_and_counts_each_bad_record_kind_and_never_picks_nan(tmp_path, capsys, case, role, kind, line,
                                                                       change):
    src, scores = write_world(tmp_path), write_scores(tmp_path)
    change(src, scores)
    res = bon.select_benchmarks(parse_args(SelectConfig, ["--path", str(tmp_path), "--benchmarks", "mathvista",
                                                          "--n", "1,2"]))
    out = tmp_path / "runs/bon/dreamprm"
    mv = no_nan((out / "results.json").read_text())["benchmarks"]["mathvista"]
    assert mv == json.loads(json.dumps(res["benchmarks"]["mathvista"]))
    bad = {"candidates": src, "scores": scores}[role]
    got = mv["skipped"][role]["kinds"][kind]
    assert got["count"] == 1 and got["first"][0].startswith(f"{bad}:{line}")
    assert f"{bad}: skipped 1 of" in capsys.readouterr().out
    selected = {r["id"]: r for r in read_jsonl(out / "mathvista.selected.jsonl")}
    assert set(selected) == {f"q{k}" for k in range(N_Q)} and mv["total"] == N_Q  # every question selected
    assert all(r["sample"] == 1 and r["score"] is not None for k, r in selected.items() if k != "q0")
    if role == "scores":  # q0's scores are not used: a question without scores, the lowest sample index
        assert mv["counts"]["questions without scores (the lowest sample index is picked)"] == 1
        assert selected["q0"]["sample"] == 0 and selected["q0"]["score"] is None


def test_pick_best_never_picks_nan():
    assert bon.pick_best([math.nan, 0.2]) == 1 and bon.pick_best([0.2, math.nan], "last") == 0
    assert bon.pick_best([math.nan, math.nan]) == 0


@pytest.mark.parametrize("case, message", [
    ("empty scores file", "{scores}: empty file"),
    ("malformed scores array", "{scores}:1: malformed JSON"),
    ("no selectable question", "no question to select from: none of its ids is in"),
    ("mixed units", "scores of several units"),
    ("empty candidate file", "{src}: empty file"),
    ("missing candidate file", "no candidate file for any of 'mathvista'"),
])
def test_pick_whole_file_errors_are_one_line_and_write_nothing(tmp_path, case, message):
    src = write_world(tmp_path)
    scores = write_scores(tmp_path)
    extra = []
    if case == "empty candidate file":
        src.write_bytes(b" \n")
    elif case == "missing candidate file":
        src.unlink()
    elif case == "empty scores file":
        scores.write_bytes(b"\n")
    elif case == "malformed scores array":
        scores.write_bytes(b'[{"id": "q0" "candidates": []}]')
    elif case == "no selectable question":
        write_jsonl(tmp_path / "data/mathvista.jsonl", [{"id": "other"}])
        extra = ["--questions", "data/{benchmark}.jsonl"]
    else:  # an ORM's record among a PRM's
        set_line(scores, 2, b'{"id": "q1", "unit": "response", "candidates": [{"sample": 0, "scores": [0.5]}]}')
    with pytest.raises(DataError) as e:
        bon.select_benchmarks(parse_args(SelectConfig, ["--path", str(tmp_path), "--benchmarks", "mathvista", *extra]))
    assert message.format(scores=scores, src=src) in str(e.value) and "\n" not in str(e.value)
    assert {p.name for p in scores.parent.iterdir() if not p.name.endswith(".lock")} == {scores.name}


def test_pick_and_tables_refuse_to_overwrite_without_resume(tmp_path):
    write_world(tmp_path)
    write_scores(tmp_path)
    pick = ["--path", str(tmp_path), "--benchmarks", "mathvista", "--n", "1,2"]
    bon.select_benchmarks(parse_args(SelectConfig, pick))
    results = tmp_path / "runs/bon/dreamprm/results.json"
    with pytest.raises(FileExistsError, match=f"{results} exists; pass --resume"):
        bon.select_benchmarks(parse_args(SelectConfig, pick))
    bon.select_benchmarks(parse_args(SelectConfig, [*pick, "--resume"]))
    tables = ["--path", str(tmp_path), "--figs", "figs"]
    written = write_tables(parse_args(TablesConfig, tables))
    assert written["figure"].stat().st_size > 1000 and not list((tmp_path / "figs").glob(".*tmp*"))
    with pytest.raises(FileExistsError, match=f"{tmp_path / 'runs/bon/tables'} exists; pass --resume"):
        write_tables(parse_args(TablesConfig, tables))
    write_tables(parse_args(TablesConfig, [*tables, "--resume"]))
    # a damaged results.json is one line naming it, not a table of NaN
    damaged = json.loads(results.read_text())
    damaged["benchmarks"]["mathvista"]["accuracy"]["oracle"]["2"] = float("nan")
    results.write_text(json.dumps(damaged))
    with pytest.raises(DataError, match=f"{results}: benchmark mathvista, oracle, N = 2: accuracy nan"):
        write_tables(parse_args(TablesConfig, [*tables, "--resume"]))


# --- one line on stderr, no traceback: one subprocess per stage ----------------------------------------------

def test_each_stage_fails_in_one_line(tmp_path):
    src = write_world(tmp_path)
    src.write_bytes(b"")
    write_world(tmp_path / "p")
    scores = write_scores(tmp_path / "p")
    scores.write_bytes(b'[{"id": "q0", "candidates": [{"sample": 0, "scores": [0.5]}]},\n{"id"')
    results = tmp_path / "runs/bon/dreamprm/results.json"
    results.parent.mkdir(parents=True)
    results.write_text('{"run": "dreamprm",\n "n": [1,]}')
    cases = {  # stage: (arguments, what its one line says); score.py's: the refused copy of the lock test below
        "pick.py": (["--path", str(tmp_path / "p"), "--benchmarks", "mathvista"], f"{scores}:2: malformed JSON"),
        "tables.py": (["--path", str(tmp_path)], f"{results}:2: malformed results file"),
        "export_mmvet.py": (["--path", str(tmp_path), "--candidates", CAND], f"{src}: empty file"),
    }
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    procs = {stage: subprocess.Popen([sys.executable, str(ROOT / "BoN" / stage), *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for stage, (args, _) in cases.items()}  # together: the interpreter starts overlap
    for stage, p in procs.items():
        _, err = p.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), (stage, err)
        assert cases[stage][1] in lines[0] and "Traceback" not in err, (stage, err)


# --- two copies on one output: exactly one runs -------------------------------------------------------------

# Both copies import everything first and start on a signal, so they reach the output lock together.
STARTER = """import pathlib, runpy, sys, time
import dreamprm.bon  # noqa: F401  (the slow imports, before the start signal)
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_two_copies_of_score_on_one_output_exactly_one_runs(tmp_path, prm_dir):
    n_q = 24  # enough questions that the winner still scores when the other copy reaches the lock
    write_world(tmp_path, n_q=n_q, n_c=4)
    starter = tmp_path / "starter.py"
    starter.write_text(STARTER)
    go = tmp_path / "go"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(starter), str(go), str(ROOT / "BoN/score.py"), *score_args(tmp_path, prm_dir)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    done = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in done)
    assert codes[0] == 0 and codes[1] != 0, done
    err = next(err for code, _, err in done if code != 0)  # score.py's one-line error
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert "being written by another process (pid" in err
    # the winner's scores are a single run's
    bon.score_benchmarks(parse_args(ScoreConfig, score_args(tmp_path, prm_dir, "--name", "single", "--no_select")))
    by_id = lambda p: {r["id"]: r for r in read_jsonl(p)}  # noqa: E731
    two, one = (by_id(tmp_path / f"runs/bon/{n}/mathvista.scores.jsonl") for n in ("dreamprm", "single"))
    assert sorted(two) == sorted(one) and len(one) == n_q
    for qid, rec in one.items():
        for a, b in zip(two[qid]["candidates"], rec["candidates"]):
            assert a["sample"] == b["sample"] and a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    assert (tmp_path / "runs/bon/dreamprm/results.json").is_file()


# --- BoN/export_mmvet.py -------------------------------------------------------------------------------------

def test_export_skips_bad_selection_records_and_refuses_to_overwrite(tmp_path, capsys):
    write_jsonl(tmp_path / "runs/rollouts/mmvet.jsonl",
                [{"id": f"v1_{k}", "sample": s, "response": f"Final answer: {k}-{s}"} for k in range(12) for s in (0, 1)])
    sel = tmp_path / "runs/bon/dreamprm/mmvet.selected.jsonl"
    write_jsonl(sel, [{"id": f"v1_{k}", "sample": 1, "method": "prm:mean_log_odds", "picks": {"self_consistency": 0}}
                      for k in range(12)])
    set_line(sel, 3, b'{"id": "v1_2", "sample": "one", "method": "prm:mean_log_odds"}')
    export = load_script("BoN/export_mmvet.py").main
    args = ["--path", str(tmp_path), "--grader_questions", "12", "--names", "dreamprm"]
    written = export(args)
    got = json.loads(written["dreamprm.json"].read_text())
    assert got["v1_2"] == "" and got["v1_3"] == "3-1" and len(got) == 12
    summary = json.loads((tmp_path / "runs/mmvet_grader/export_summary.json").read_text())
    kinds = summary["skipped"]["selection dreamprm"]["kinds"]
    assert kinds["wrong type"]["count"] == 1 and kinds["wrong type"]["first"][0].startswith(f"{sel}:3 ")
    assert summary["files"]["dreamprm.json"]["no candidate (empty answer)"] == 1
    with pytest.raises(FileExistsError, match="pass --resume"):
        export(args)
    export([*args, "--resume"])
