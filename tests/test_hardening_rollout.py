"""Issue 12, stage 2 (inference/, dreamprm/rollout.py): every bad-input kind ends in a counted skip (kind and
file:line in the summary and the .done marker) or a one-line error, and every good question is still sampled.

The questions come from a tiny CPU mini world and are answered by its SIMULATED policy (`--backend simulated`),
so nothing here loads a model.
"""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from dreamprm import shards
from dreamprm.cli import parse_args
from dreamprm.io import DataError, read_records
from dreamprm.rollout import RolloutArgs
from dreamprm.miniworld.world import build
from conftest import ROOT, load_script

WORLD_SCRIPT = ROOT / "inference" / "world.py"
N = 2  # responses per question


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A mini world under `root`: world/policy.json and its 18 questions."""
    root = tmp_path_factory.mktemp("world")
    build(root / "world", root=root, seed=0, n_train=2, n_meta=2, n_test=2)
    questions = {}  # data/ holds each domain's file and train.jsonl, meta.jsonl with the same questions again
    for f in sorted((root / "world" / "data").glob("*.jsonl")):
        for ln in f.read_text().splitlines():
            q = json.loads(ln)
            questions.setdefault(q["id"], q)
    return root, list(questions.values())


def rollouts(root, questions, *extra):
    """inference/world.py in this process; --questions and --out relative to --path."""
    argv = ["--path", str(root), "--questions", questions, "--out", "runs/out.jsonl", "--backend", "simulated",
            "--policy", "world/policy.json", "--judge", "none", "--n", str(N), "--gpu", "cpu",
            "--max_skip_fraction", "0.5", *extra]
    return load_script("inference/world.py").main(argv)


def write_lines(path: Path, lines: list) -> None:
    path.write_bytes(b"".join((ln if isinstance(ln, bytes) else json.dumps(ln).encode()) + b"\n" for ln in lines))


def png(path: Path, size=(40, 30)) -> str:
    Image.new("RGB", size, (10, 200, 30)).save(path)
    return path.name


def put(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return path.name


def _image(make):
    return lambda q, d: dict(q, image_path=make(d))


# case -> the bad line, made from a spare world question (its id is in the policy) and the data root


SKIPS = {
    "malformed JSON": lambda q, d: b'{"id": "x", "input": ',
    "non-UTF-8 bytes": lambda q, d: json.dumps(q).encode().replace(b'"input": "', b'"input": "\xff', 1),
    "not a JSON object": lambda q, d: b"[1, 2]",
    "missing field": lambda q, d: {k: v for k, v in q.items() if k != "ground_truth"},
    "empty input": lambda q, d: dict(q, input="  "),
    "wrong type id": lambda q, d: dict(q, id=["a"]),
    "wrong type input": lambda q, d: dict(q, input=12),
    "wrong type options": lambda q, d: dict(q, options="A, B"),
    "not a finite ground truth": lambda q, d: json.dumps(dict(q, ground_truth=float("nan"))).encode(),
    "missing image": _image(lambda d: "nowhere/gone.png"),
    "zero-byte image": _image(lambda d: put(d / "empty.png", b"")),
    "unreadable image": _image(lambda d: put(d / "bad.png", b"\x89PNG\r\n\x1a\n broken")),
    "image too large": _image(lambda d: png(d / "huge.png", (400, 300))),  # over --max_image_pixels 100000
}
KIND = {"empty input": "missing field", "wrong type id": "wrong type", "wrong type input": "wrong type",
        "wrong type options": "wrong type", "not a finite ground truth": "not a finite number"}


@pytest.mark.parametrize("case", list(SKIPS) + ["duplicate question id"])
def test_a_bad_question_is_skipped_counted_and_located(world, tmp_path, case):
    root, qs = world
    good, spare = qs[:6], qs[6]
    bad = dict(good[2], input="a copy") if case == "duplicate question id" else SKIPS[case](spare, root)
    write_lines(root / "q.jsonl", good[:4] + [bad] + good[4:])  # the bad record on line 5
    out = root / "runs" / "out.jsonl"
    for f in (out, shards.done_marker(out)):
        f.unlink(missing_ok=True)
    summary = rollouts(root, "q.jsonl", "--max_image_pixels", "100000")
    kind = KIND.get(case, case)
    records = read_records(out)
    assert sorted((r["id"], r["sample"]) for r in records) == sorted((q["id"], s) for q in good for s in range(N))
    marker = shards.read_marker(out)
    assert marker["records"] == len(good) * N and marker["skipped"] == summary["skipped"]
    assert marker["skipped"]["skipped"] == 1 and list(marker["skipped"]["kinds"]) == [kind]
    assert marker["skipped"]["kinds"][kind]["first"][0].startswith(f"{root / 'q.jsonl'}:5")
    if case == "duplicate question id":  # the first record with the id is kept
        assert not any(r["input"].startswith("a copy") for r in records)


@pytest.mark.parametrize("case", ["empty file", "missing file", "malformed JSON array", "non-UTF-8 array",
                                  "flood", "nothing usable", "bad shard", "bad backend_args"])
def test_a_bad_file_or_option_is_one_located_error(world, case):
    root, qs = world
    path = root / "bad.jsonl"
    extra = []
    if case == "empty file":
        path.write_text("\n \n")
    elif case == "missing file":
        path.unlink(missing_ok=True)
    elif case == "malformed JSON array":
        path.write_text("[\n" + json.dumps(qs[0]) + ",\n{\"id\": 1,,}\n]")
    elif case == "non-UTF-8 array":
        path.write_bytes(b"[\n" + json.dumps(qs[0]).encode() + b",\n\xff\n]")
    elif case == "flood":  # 2 of 4 skipped is over the default ceiling 0.1
        write_lines(path, qs[:2] + [b"{", {"id": "q"}])
        extra = ["--max_skip_fraction", "0.1"]
    elif case == "nothing usable":  # every question filtered out by --limit
        write_lines(path, qs[:2])
        extra = ["--limit", "0"]
    else:
        write_lines(path, qs[:2])
        extra = ["--shard", "3/2"] if case == "bad shard" else ["--backend_args", "{not json"]
    expected = {"empty file": r"bad\.jsonl: empty file", "missing file": r"bad\.jsonl: no such file",
                "malformed JSON array": r"bad\.jsonl:3: malformed JSON", "non-UTF-8 array": r"bad\.jsonl:3: non-UTF-8",
                "flood": r"skipped 2 of 4 records.*over the ceiling", "nothing usable": r"bad\.jsonl: no question",
                "bad shard": "--shard must be i/n", "bad backend_args": "--backend_args is not valid JSON"}[case]
    with pytest.raises(DataError, match=expected):
        rollouts(root, "bad.jsonl", "--out", f"runs/{case}.jsonl", *extra)
    assert not (root / "runs" / f"{case}.jsonl").exists()  # nothing left that would refuse the retry


def test_error_is_one_line_without_traceback(world, tmp_path):
    root, qs = world
    write_lines(root / "flood.jsonl", qs[:1] + [b"{"] * 3)
    done = subprocess.run([sys.executable, str(WORLD_SCRIPT), "--path", str(root), "--questions", "flood.jsonl",
                           "--out", "runs/flood.jsonl", "--backend", "simulated", "--policy", "world/policy.json",
                           "--judge", "none", "--gpu", "cpu"], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr and "flood.jsonl" in lines[0] and "malformed JSON 3" in lines[0]


def test_relative_policy_questions_and_out_resolve_against_path(world, tmp_path, monkeypatch, capsys):
    root, qs = world
    write_lines(root / "rel.jsonl", qs[:3])
    monkeypatch.chdir(tmp_path)  # not the data root: every relative path must still land under --path
    summary = rollouts(root, "rel.jsonl", "--out", "runs/rel.jsonl")
    assert summary["out"] == root / "runs" / "rel.jsonl" and summary["records"] == 3 * N
    assert not (tmp_path / "runs").exists()
    out = capsys.readouterr().out
    assert "policy: simulated policy (no model)" in out and str(root / "world" / "policy.json") in out


def test_a_policy_of_another_world_is_one_error(world):
    root, qs = world
    write_lines(root / "stranger.jsonl", [dict(qs[0], id="not-in-the-world")])
    with pytest.raises(DataError, match="knows no question 'not-in-the-world'"):
        rollouts(root, "stranger.jsonl", "--out", "runs/stranger.jsonl")
    assert not (root / "runs" / "stranger.jsonl").exists()
    with pytest.raises(DataError, match=f"{root / 'nowhere' / 'policy.json'}: no SIMULATED policy file"):
        rollouts(root, "stranger.jsonl", "--out", "runs/stranger.jsonl", "--policy", "nowhere/policy.json")


def test_model_options_resolve_local_paths_and_keep_hub_ids(tmp_path):
    (tmp_path / "models" / "judge").mkdir(parents=True)
    cfg = parse_args(RolloutArgs, ["--path", str(tmp_path)])
    assert cfg.model_path("models/judge") == str(tmp_path / "models" / "judge")  # exists under --path
    assert cfg.model_path("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"  # a hub id
    assert cfg.model_path("./mine") == str(tmp_path / "mine")  # cannot be a hub id
    assert cfg.model_path("runs/x/prm") == str(tmp_path / "runs" / "x" / "prm")
    assert cfg.model_path("/abs/model") == "/abs/model"


STARTER = textwrap.dedent("""
    import os, sys, time, importlib.util
    from pathlib import Path
    go, script, *args = sys.argv[1:]
    spec = importlib.util.spec_from_file_location("stage", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # the slow imports first, so that both copies start the run together
    Path(f"{go}.ready-{os.getpid()}").touch()
    while not Path(go).exists():
        time.sleep(0.005)
    sys.argv = [script, *args]
    mod.main()
""")


def test_two_copies_on_one_output_one_runs_the_other_is_refused(world, tmp_path):
    root, qs = world
    write_lines(root / "two.jsonl", qs)
    args = ["--path", str(root), "--questions", "two.jsonl", "--out", "runs/two.jsonl", "--backend", "simulated",
            "--policy", "world/policy.json", "--judge", "none", "--gpu", "cpu", "--n", "200"]
    (tmp_path / "starter.py").write_text(STARTER)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "starter.py"), str(go), str(WORLD_SCRIPT), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1")) for _ in range(2)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("go.ready-*"))) < 2 and time.time() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.02)
    go.touch()  # both released together
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert sorted(r[0] for r in results) == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "being written by another process (pid " in loser[2] and "Traceback" not in loser[2]
    assert len(loser[2].strip().splitlines()) == 1
    single = rollouts(root, "two.jsonl", "--out", "runs/single.jsonl", "--n", "200")
    assert single["records"] == len(qs) * 200
    assert (root / "runs" / "two.jsonl").read_bytes() == (root / "runs" / "single.jsonl").read_bytes()
