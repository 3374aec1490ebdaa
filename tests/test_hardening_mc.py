"""Issue 12 for the MC stages (MC/tree.py, MC/estimate.py, MC/train_data.py; exports and ORM data): every kind of
bad input ends in a counted skip (kind and file:line in the summary and the .done JSON) or a one-line error, the
good records all come through, empty results are errors that leave nothing behind, and one output has one writer.

The inputs come from a tiny CPU mini world (dreamprm/miniworld/world.py) run through the SIMULATED policy backend."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock
from PIL import Image

from dreamprm import shards
from dreamprm.cli import parse_args
from dreamprm.io import DataError, OutputLocked, lock_path, read_records, release_output, write_jsonl
from dreamprm.mc import build_tree
from dreamprm.miniworld.simulated import SimulatedPolicy
from dreamprm.steps import final_answer_text
from dreamprm.miniworld.world import build
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
tree_cli, est_cli, train_cli = (load_script(f"MC/{s}.py") for s in ("tree", "estimate", "train_data"))
orm_cli, trl_cli = load_script("MC/orm_data.py"), load_script("MC/export_trl.py")
PIXELS = "30000"  # world images are at most 160 x 160 = 25,600 pixels; the "huge" one has 90,000
SIM = ["--backend", "simulated", "--policy", "world/policy.json", "--judge", "none", "--gpu", "cpu"]
FAST = ["--rule", "fixed", "--min_rollouts", "3", "--max_rollouts", "3"]


def policy_records(root: Path, n: int, seed: int) -> list[dict]:
    """One SIMULATED response per train question of a world built in root/world."""
    build(root / "world", seed=seed, n_train=n, n_meta=1, n_test=1, root=root)
    sim = SimulatedPolicy(root / "world" / "policy.json", verbose=False)
    recs = []
    for k, q in enumerate(read_records(root / "world" / "data" / "train.jsonl")):
        text = sim.sample(q["id"], "", k, 1, 1.0)[0]
        recs.append({"id": q["id"], "sample": 0, "response": text, "input": q["input"],
                     "image_path": q["image_path"], "ground_truth": q["ground_truth"], "dataset": q["dataset"],
                     "options": None, "true_false": final_answer_text(text) == str(q["ground_truth"])})
    return recs


def estimate(world: Path, tree: Path, out: Path, *extra) -> dict:
    cfg = parse_args(est_cli.EstimateArgs, ["--path", str(world), "--tree", str(tree), "--out", str(out), *SIM,
                                            *FAST, "--max_image_pixels", PIXELS, *extra])
    return est_cli.run(cfg, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """12 responses (one per train question of six domains), their 60 tree nodes, the clean estimate and
    train data: what every bad-input run must reproduce for its good records."""
    root = tmp_path_factory.mktemp("world")
    recs = policy_records(root, 2, seed=1)
    write_jsonl(root / "responses.jsonl", recs)
    nodes, _ = build_tree(recs)
    write_jsonl(root / "tree.jsonl", nodes)
    estimate(root, root / "tree.jsonl", root / "estimate.jsonl")
    train_cli.main(["--path", str(root), "--nodes", "estimate.jsonl", "--out", "train.jsonl", "--max_image_pixels",
                    PIXELS])
    return root


# --- building bad inputs ---------------------------------------------------------------------------

def bad_image(tmp: Path, kind: str) -> str:
    """An absolute path to an image of the given badness."""
    p = tmp / f"bad-{kind}.png"
    if kind == "zero-byte":
        p.write_bytes(b"")
    elif kind == "corrupt":  # the first half of a real PNG: it opens, then fails to decode
        Image.new("RGB", (80, 80), "red").save(tmp / "whole.png")
        data = (tmp / "whole.png").read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "huge":
        Image.new("RGB", (300, 300), "blue").save(p)
    return str(p)  # "missing": never written


def with_bad_line(src: Path, dst: Path, bad, at: int = 2) -> int:
    """`src`'s lines with `bad` (bytes, or a record written as JSON, NaN allowed) inserted before line at + 1;
    returns the bad line's number."""
    lines = src.read_bytes().splitlines()
    lines.insert(at, bad if isinstance(bad, bytes) else json.dumps(bad).encode())
    dst.write_bytes(b"\n".join(lines) + b"\n")
    return at + 1


def drop(r, key):
    return {k: v for k, v in r.items() if k != key}


IMAGES = [("missing image", "missing"), ("zero-byte image", "zero-byte"), ("unreadable image", "corrupt"),
          ("image too large", "huge")]

# (case, kind counted, bad variant of a good record r: a record, or raw bytes; tmp for image files)
POLICY_CASES = [
    ("malformed JSON", "malformed JSON", lambda r, t: b'{"id": "x", "response": '),
    ("non-UTF-8", "non-UTF-8 bytes", lambda r, t: b'{"id": "\xff\xfe"}'),
    ("not an object", "not a JSON object", lambda r, t: b'[1, 2]'),
    ("missing field", "missing field", lambda r, t: drop(r, "input")),
    ("missing ground truth", "missing field", lambda r, t: drop(r, "ground_truth")),
    *[(f"{name} image", kind, lambda r, t, name=name: {**r, "image_path": bad_image(t, name)})
      for kind, name in IMAGES],
    ("no steps", "no steps", lambda r, t: {**r, "response": "It is 4.\n\nFinal answer: 4"}),
    ("no final answer", "no final answer", lambda r, t: {**r, "response": "Step 1: Look.\n\nStep 2: Count."}),
    ("failed generation", "no final answer", lambda r, t: {**r, "response": None}),
    ("NaN sample", "not a finite number", lambda r, t: {**r, "sample": float("nan")}),
    ("out-of-range sample", "out of range", lambda r, t: {**r, "sample": -1}),
    ("bad label", "bad label", lambda r, t: {**r, "true_false": "maybe"}),
    ("number as input", "wrong type", lambda r, t: {**r, "input": 5}),
    ("string number sample", "wrong type", lambda r, t: {**r, "sample": "1"}),
    ("null ground truth", "wrong type", lambda r, t: {**r, "ground_truth": None}),
    ("options not a list", "wrong type", lambda r, t: {**r, "options": "A, B"}),
    ("duplicate response", "duplicate response", lambda r, t: r),
]

NODE_CASES = [
    ("malformed JSON", "malformed JSON", lambda r, t: b'{"id": "x", "sid": '),
    ("non-UTF-8", "non-UTF-8 bytes", lambda r, t: b'{"id": "\xff\xfe"}'),
    ("missing field", "missing field", lambda r, t: drop(r, "accuracy")),
    *[(f"{name} image", kind, lambda r, t, name=name: {**r, "image_path": bad_image(t, name)})
      for kind, name in IMAGES],
    ("no steps (empty prefix)", "empty step prefix", lambda r, t: {**r, "add": "  \n"}),
    ("NaN accuracy", "not a finite number", lambda r, t: {**r, "accuracy": float("nan")}),
    ("infinite score", "not a finite number", lambda r, t: {**r, "score": float("inf")}),
    ("accuracy above 1", "out of range", lambda r, t: {**r, "accuracy": 1.5}),
    ("negative accuracy", "out of range", lambda r, t: {**r, "accuracy": -0.25}),
    ("times 0", "out of range", lambda r, t: {**r, "score": 0, "times": 0, "accuracy": 0.0}),
    ("sid 0", "out of range", lambda r, t: {**r, "sid": 0}),
    ("score > times", "inconsistent numbers", lambda r, t: {**r, "score": 5, "times": 4, "accuracy": 1.0}),
    ("accuracy is not score / times", "inconsistent numbers",
     lambda r, t: {**r, "score": 1, "times": 4, "accuracy": 0.5}),
    ("string accuracy", "wrong type", lambda r, t: {**r, "accuracy": "0.5"}),
    ("fractional times", "wrong type", lambda r, t: {**r, "times": 2.5}),
    ("boolean sid", "wrong type", lambda r, t: {**r, "sid": True}),
    ("number as add", "wrong type", lambda r, t: {**r, "add": 7}),
    ("null ground truth", "wrong type", lambda r, t: {**r, "ground_truth": None}),
    ("duplicate node", "duplicate node", lambda r, t: r),
]


def ids(cases):
    return [c[0] for c in cases]


def fresh(r: dict) -> dict:
    """A bad variant must not collide with a good record, except where that is the point (duplicates)."""
    return {**r, "sample": 7}


def assert_one_skip(summary: dict, kind: str, where: str, out: str) -> None:
    kinds = summary["skipped"]["kinds"]
    assert list(kinds) == [kind] and kinds[kind]["count"] == 1
    assert kinds[kind]["first"][0].split(" ")[0] == where  # "file:line (detail)"
    assert f"skipped 1 of {summary['skipped']['read']} records: {kind} 1 (e.g. {where}" in out


# --- per bad-input kind, per stage -----------------------------------------------------------------

@pytest.mark.parametrize("case,kind,make", POLICY_CASES, ids=ids(POLICY_CASES))
def test_tree_counts_each_bad_response_and_keeps_the_good(world, tmp_path, capsys, case, kind, make):
    good = read_records(world / "responses.jsonl")
    bad = make(good[0] if kind == "duplicate response" else fresh(good[0]), tmp_path)
    line = with_bad_line(world / "responses.jsonl", tmp_path / "responses.jsonl", bad)
    out = tmp_path / "tree.jsonl"
    nodes, summary = tree_cli.main(["--path", str(world), "--responses", str(tmp_path / "responses.jsonl"),
                                    "--out", str(out), "--max_image_pixels", PIXELS])
    assert_one_skip(summary, kind, f"{tmp_path / 'responses.jsonl'}:{line}", capsys.readouterr().out)
    assert shards.read_marker(out) == summary and summary["records"] == 60
    assert out.read_bytes() == (world / "tree.jsonl").read_bytes()  # every good response's nodes, as before


@pytest.mark.parametrize("case,kind,make", NODE_CASES, ids=ids(NODE_CASES))
def test_estimate_counts_each_bad_node_and_estimates_the_good(world, tmp_path, capsys, case, kind, make):
    good = read_records(world / "tree.jsonl")
    bad = make(good[0] if kind == "duplicate node" else fresh(good[0]), tmp_path)
    line = with_bad_line(world / "tree.jsonl", tmp_path / "tree.jsonl", bad)
    out = tmp_path / "estimate.jsonl"
    stats = estimate(world, tmp_path / "tree.jsonl", out)
    assert_one_skip(stats, kind, f"{tmp_path / 'tree.jsonl'}:{line}", capsys.readouterr().out)
    assert shards.read_marker(out)["skipped"] == stats["skipped"] and stats["records"] == 60
    assert out.read_bytes() == (world / "estimate.jsonl").read_bytes()  # no good node lost or changed


@pytest.mark.parametrize("case,kind,make", NODE_CASES, ids=ids(NODE_CASES))
def test_train_data_counts_each_bad_node_and_selects_from_the_good(world, tmp_path, capsys, case, kind, make):
    good = read_records(world / "estimate.jsonl")
    bad = make(good[0] if kind == "duplicate node" else fresh(good[0]), tmp_path)
    line = with_bad_line(world / "estimate.jsonl", tmp_path / "nodes.jsonl", bad)
    out = tmp_path / "train.jsonl"
    train, summary = train_cli.main(["--path", str(world), "--nodes", str(tmp_path / "nodes.jsonl"),
                                     "--out", str(out), "--max_image_pixels", PIXELS])
    assert_one_skip(summary, kind, f"{tmp_path / 'nodes.jsonl'}:{line}", capsys.readouterr().out)
    assert shards.read_marker(out) == summary and summary["records"] == len(train) == 60
    assert out.read_bytes() == (world / "train.jsonl").read_bytes()


@pytest.mark.parametrize("case,kind,make", [c for c in NODE_CASES if "image" not in c[0]],
                         ids=[c[0] for c in NODE_CASES if "image" not in c[0]])
def test_export_counts_each_bad_node(world, tmp_path, capsys, case, kind, make):
    good = read_records(world / "estimate.jsonl")
    bad = make(good[0] if kind == "duplicate node" else fresh(good[0]), tmp_path)
    line = with_bad_line(world / "estimate.jsonl", tmp_path / "nodes.jsonl", bad)
    rows = trl_cli.main(["--path", str(world), "--nodes", str(tmp_path / "nodes.jsonl"), "--out",
                         str(tmp_path / "trl.jsonl")])
    summary = shards.read_marker(tmp_path / "trl.jsonl")
    assert_one_skip(summary, kind, f"{tmp_path / 'nodes.jsonl'}:{line}", capsys.readouterr().out)
    assert len(rows) == summary["records"] == 12 and all(len(r["labels"]) == 5 for r in rows)


ORM_KEEPS = ("missing ground truth", "no steps", "null ground truth", "options not a list")  # an outcome label
ORM_CASES = [c for c in POLICY_CASES if c[0] not in ORM_KEEPS]  # needs no steps, ground truth or options


@pytest.mark.parametrize("case,kind,make", ORM_CASES, ids=ids(ORM_CASES))
def test_orm_data_counts_each_bad_response(world, tmp_path, capsys, case, kind, make):
    good = read_records(world / "responses.jsonl")
    bad = make(good[0] if kind == "duplicate response" else fresh(good[0]), tmp_path)
    line = with_bad_line(world / "responses.jsonl", tmp_path / "responses.jsonl", bad)
    train, summary = orm_cli.main(["--path", str(world), "--responses", str(tmp_path / "responses.jsonl"),
                                   "--out", str(tmp_path / "orm.jsonl"), "--max_image_pixels", PIXELS])
    assert_one_skip(summary, kind, f"{tmp_path / 'responses.jsonl'}:{line}", capsys.readouterr().out)
    assert [r["id"] for r in train] == [r["id"] for r in good]


# --- whole-file errors: one line naming the file (and line) ----------------------------------------

def run_stage(stage: str, world: Path, src: Path, out: Path):
    if stage == "tree":
        return tree_cli.main(["--path", str(world), "--responses", str(src), "--out", str(out)])
    if stage == "estimate":
        return estimate(world, src, out)
    return train_cli.main(["--path", str(world), "--nodes", str(src), "--out", str(out)])


@pytest.mark.parametrize("stage", ["tree", "estimate", "train_data"])
@pytest.mark.parametrize("case,content,message", [
    ("missing file", None, r"{src}: no such file"),
    ("empty file", b"\n \n", r"{src}: empty file"),
    ("malformed JSON array", b'[\n{"id": 1},\n{oops\n]', r"{src}:3: malformed JSON"),
])
def test_an_unreadable_input_is_one_error_naming_it_and_writes_nothing(world, tmp_path, stage, case, content,
                                                                       message):
    src, out = tmp_path / "input.jsonl", tmp_path / "out.jsonl"
    if content is not None:
        src.write_bytes(content)
    with pytest.raises(DataError, match=message.format(src=src)) as e:
        run_stage(stage, world, src, out)
    assert "\n" not in str(e.value) and not out.exists() and not shards.done_marker(out).exists()


@pytest.mark.parametrize("stage", ["tree", "estimate", "train_data"])
def test_a_flood_of_bad_records_is_an_error_after_a_counted_report_and_writes_nothing(world, tmp_path, capsys,
                                                                                     stage):
    src = world / ("responses.jsonl" if stage == "tree" else "tree.jsonl" if stage == "estimate" else
                   "estimate.jsonl")
    recs = read_records(src)
    for r in recs[:3]:  # 3 of 12 responses / 3 of 60 nodes: over the ceiling only for the tree
        r["image_path"] = bad_image(tmp_path, "missing")
    if stage != "tree":
        for r in recs[3:9]:
            r["accuracy"] = 2.0
    write_jsonl(tmp_path / "input.jsonl", recs)
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match=r"input\.jsonl: skipped \d+ of \d+ records: .*over the ceiling "
                                        r"--max_skip_fraction 0\.1") as e:
        run_stage(stage, world, tmp_path / "input.jsonl", out)
    assert "\n" not in str(e.value) and "missing image" in str(e.value)
    assert not out.exists() and not shards.done_marker(out).exists()


# --- empty results ---------------------------------------------------------------------------------

def test_empty_results_are_errors_and_leave_nothing_that_blocks_the_retry(world, tmp_path, capsys):
    # a tree without nodes: no response has steps and a final answer (each counted first), or none at all
    recs = [{**r, "response": "Final answer: 1"} for r in read_records(world / "responses.jsonl")]
    write_jsonl(tmp_path / "stepless.jsonl", recs)
    with pytest.raises(DataError, match=r"skipped 12 of 12 records: no steps 12"):
        tree_cli.main(["--path", str(world), "--responses", str(tmp_path / "stepless.jsonl"), "--out",
                       str(tmp_path / "t.jsonl")])
    assert "skipped 12 of 12 records" in capsys.readouterr().out and not (tmp_path / "t.jsonl").exists()
    (tmp_path / "none.json").write_text("[]")
    with pytest.raises(DataError, match=r"no tree nodes: .*none\.json: no record skipped"):
        tree_cli.main(["--path", str(world), "--responses", str(tmp_path / "none.json"), "--out",
                       str(tmp_path / "t.jsonl")])
    assert not (tmp_path / "t.jsonl").exists()
    # no node in this shard; then the retry over the whole tree needs no --resume
    write_jsonl(tmp_path / "one.jsonl", read_records(world / "tree.jsonl")[:1])
    with pytest.raises(DataError, match=r"one\.jsonl: no node to estimate in shard 0/2"):
        estimate(world, tmp_path / "one.jsonl", tmp_path / "e.jsonl", "--shard", "0/2")
    assert not list(tmp_path.glob("e*.jsonl"))
    assert estimate(world, tmp_path / "one.jsonl", tmp_path / "e.jsonl")["records"] == 1
    # every node of the tree has an unreadable image: the run stops before the output exists
    corrupt = bad_image(tmp_path, "corrupt")
    recs = [{**r, "image_path": corrupt} for r in read_records(world / "tree.jsonl")]
    write_jsonl(tmp_path / "corrupt.jsonl", recs)
    with pytest.raises(DataError, match=r"skipped 60 of 60 records: unreadable image 60"):
        estimate(world, tmp_path / "corrupt.jsonl", tmp_path / "c.jsonl")
    assert not (tmp_path / "c.jsonl").exists()
    # no train record selected
    with pytest.raises(DataError, match=r"no train record selected from 60 usable nodes \(--per_domain 0"):
        train_cli.main(["--path", str(world), "--nodes", "estimate.jsonl", "--out", str(tmp_path / "tr.jsonl"),
                        "--per_domain", "0"])
    assert not (tmp_path / "tr.jsonl").exists()


# --- one writer per output -------------------------------------------------------------------------

def hold(out: Path) -> FileLock:
    """Take `out`'s lock as another writer would (its own open file: flock refuses this process too)."""
    lock = FileLock(str(lock_path(out)), timeout=0)
    lock.acquire()
    lock_path(out).write_text(f"{os.getpid()}\n")
    return lock


def test_a_held_output_is_refused_before_anything_in_it_is_touched(world, tmp_path):
    out = tmp_path / "estimate.jsonl"
    estimate(world, world / "tree.jsonl", out)
    release_output(out)  # as if that run had ended
    before = out.read_bytes(), shards.done_marker(out).read_bytes()
    lock = hold(out)
    try:
        with pytest.raises(OutputLocked, match=rf"being written by another process \(pid {os.getpid()}"):
            estimate(world, world / "tree.jsonl", out, "--resume")
        assert (out.read_bytes(), shards.done_marker(out).read_bytes()) == before  # the marker is still there
        for cli, args in ((tree_cli, ["--responses", "responses.jsonl"]), (train_cli, ["--nodes", "estimate.jsonl"]),
                          (trl_cli, ["--nodes", "estimate.jsonl"])):
            with pytest.raises(OutputLocked, match="being written by another process"):
                cli.main(["--path", str(world), "--out", str(out), "--resume", *args])
    finally:
        lock.release()
    assert (out.read_bytes(), shards.done_marker(out).read_bytes()) == before
    tree_out = tmp_path / "tree.jsonl"
    tree_cli.main(["--path", str(world), "--responses", "responses.jsonl", "--out", str(tree_out)])
    with pytest.raises(FileExistsError, match="exists; pass --resume"):  # an OSError: one line on the command line
        tree_cli.main(["--path", str(world), "--responses", "responses.jsonl", "--out", str(tree_out)])


def test_two_copies_started_together_one_runs_the_other_is_refused(tmp_path):
    """Two real processes on one output: the loser is refused at once, in one line on stderr (MC/estimate.py's
    subprocess case of a one-line error); the result equals a single run's. 300 nodes with 32 rollouts each
    keep the winner busy for seconds, longer than two processes started together differ in start-up."""
    write_jsonl(tmp_path / "responses.jsonl", policy_records(tmp_path, 10, seed=2))
    nodes, _ = build_tree(read_records(tmp_path / "responses.jsonl"))
    write_jsonl(tmp_path / "tree.jsonl", nodes)
    args = ["--path", str(tmp_path), "--tree", "tree.jsonl", *SIM, "--rule", "fixed", "--min_rollouts", "32",
            "--max_rollouts", "32"]
    cmd = [sys.executable, str(ROOT / "MC" / "estimate.py"), *args, "--out", "two.jsonl", "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    logs = [open(tmp_path / f"copy{k}.err", "w") for k in range(2)]  # files, not pipes: nobody waits on a reader
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log) for log in logs]
    try:  # the single run meanwhile, in this process, on its own output
        est_cli.run(parse_args(est_cli.EstimateArgs, [*args, "--out", "single.jsonl"]), progress=False)
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p, log in zip(procs, logs):
            p.kill()
            log.close()
    errs = [(tmp_path / f"copy{k}.err").read_text() for k in range(2)]
    assert sorted(codes) == [0, 1], (codes, [e[-500:] for e in errs])
    loser, winner = (0, 1) if codes[0] else (1, 0)
    assert f"being written by another process (pid {procs[winner].pid}" in errs[loser]
    assert errs[loser].startswith("error: ") and errs[loser].count("\n") == 1 and "Traceback" not in errs[loser]
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "single.jsonl").read_bytes()
    assert len(read_records(tmp_path / "two.jsonl")) == 300 and shards.read_marker(tmp_path / "two.jsonl")


# --- on the command line: one line, no traceback ---------------------------------------------------

def test_tree_and_train_data_report_an_input_error_in_one_line_without_a_traceback(world, tmp_path):
    """MC/estimate.py's subprocess case is the refused copy above (every start-up costs seconds)."""
    nan = b'{"id": "a", "sid": 1, "input": "Q", "add": "Step 1: x", "ground_truth": "1", "image_path": null, ' \
          b'"dataset": "d", "score": 0, "times": 1, "accuracy": NaN}\n'
    (tmp_path / "nan.jsonl").write_bytes(nan * 2)
    runs = {
        "tree": (["MC/tree.py", "--responses", str(tmp_path / "gone.jsonl")], "gone.jsonl: no such file"),
        "train_data": (["MC/train_data.py", "--nodes", str(tmp_path / "nan.jsonl")],
                       "not a finite number 2 (e.g. " + str(tmp_path / "nan.jsonl") + ":1 (accuracy is nan)"),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    procs = {stage: subprocess.Popen([sys.executable, str(ROOT / script), "--path", str(world), *rest,
                                      "--out", str(tmp_path / f"{stage}.jsonl")],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for stage, ((script, *rest), _) in runs.items()}
    for stage, p in procs.items():
        _, err = p.communicate(timeout=120)
        assert p.returncode == 1, (stage, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (stage, err)
        assert runs[stage][1] in err, (stage, err)
        assert not (tmp_path / f"{stage}.jsonl").exists()
