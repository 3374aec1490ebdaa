"""Issue 12, the bi-level stage (reweighting/train.py) and the meta-data stage (inference/meta_data.py): every bad
input ends in a counted skip (kind and file:line in the JSON summary) or a one-line error naming file:line, the
good records around a bad one are all used, empty results are errors, and one run directory has one writer."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_script
from dreamprm.cli import parse_args
from dreamprm.io import DataError, ImageCheck, Skips, write_jsonl
from dreamprm.reweighting import ReweightConfig, Reweighter, train
from dreamprm.samples import load_meta, load_train
from dreamprm.miniworld.synthetic import write_reweighting_problem

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
MAX_PIXELS = 10_000  # im.png (56 x 56) passes, big.png (200 x 100) is "too large"
STEPS = "Step 1: There are two squares.\n\nStep 2: So the count is 2.\n\nFinal answer: 2"


def config(root, prm, *extra):
    return parse_args(ReweightConfig, ["--path", str(root), "--train", "train.jsonl", "--meta", "meta.jsonl",
                                       "--prm", str(prm), "--out", "run", "--figs", "figs", "--gpu", "cpu",
                                       "--precision", "fp32", "--lr", "2e-3", "--meta_lr", "0.05",
                                       "--log_every", "5", "--save_every", "1000", *extra])


@pytest.fixture
def root(tmp_path, images):
    images[0].save(tmp_path / "im.png")  # 56 x 56
    images[2].save(tmp_path / "big.png")  # 200 x 100
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "empty.png").write_bytes(b"")
    return tmp_path


def train_record(i, **kw):
    return {"id": f"q{i}", "sid": 1, "input": f"How many squares? ({i})", "add": "Step 1: There are two.",
            "image_path": "im.png", "dataset": "clean_a", "accuracy": 0.5, "score": 1, "times": 2, **kw}


def meta_record(i, **kw):
    return {"id": f"m{i}", "true_false": i % 2 == 0, "input": f"How many? ({i})\n\n{STEPS}", "image_path": "im.png",
            **kw}


def line(record):
    return json.dumps(record).encode()


def without(record, key):
    return {k: v for k, v in record.items() if k != key}


# (case, the bad record's line, the kind it is counted as); the bad record is line 3 of 5
TRAIN_BAD = [
    ("malformed JSON line", b'{"id": "x", "input": ', "malformed JSON"),
    ("non-UTF-8", b'{"id": "\xff\xfe", "input": "q"}', "non-UTF-8 bytes"),
    ("not an object", b"[1, 2]", "not a JSON object"),
    ("missing field", line(without(train_record(9), "accuracy")), "missing field"),
    ("missing image", line(train_record(9, image_path="gone.png")), "missing image"),
    ("corrupt image", line(train_record(9, image_path="corrupt.png")), "unreadable image"),
    ("zero-byte image", line(train_record(9, image_path="empty.png")), "zero-byte image"),
    ("huge image", line(train_record(9, image_path="big.png")), "image too large"),
    ("image path not a string", line(train_record(9, image_path=3)), "wrong type"),
    ("NaN accuracy", line(train_record(9)).replace(b'"accuracy": 0.5', b'"accuracy": NaN'), "not a finite number"),
    ("accuracy out of range", line(train_record(9, accuracy=1.5, score=None)), "out of range"),
    ("accuracy as a string", line(train_record(9, accuracy="0.5")), "wrong type"),
    ("accuracy a bool", line(train_record(9, accuracy=True)), "wrong type"),
    ("score above times", line(train_record(9, score=3, times=2, accuracy=1.0)), "inconsistent numbers"),
    ("accuracy not score / times", line(train_record(9, accuracy=0.9)), "inconsistent numbers"),
    ("times not a whole number", line(train_record(9, times=2.5)), "wrong type"),
    ("input not a string", line(train_record(9, input=["q"])), "wrong type"),
    ("dataset not a string", line(train_record(9, dataset=None)), "wrong type"),
    ("id not a scalar", line(train_record(9, id=[1])), "wrong type"),
    ("empty step prefix", line(train_record(9, add=" \n\n")), "empty step prefix"),
]

META_BAD = [
    ("malformed JSON line", b'{"true_false": tru', "malformed JSON"),
    ("non-UTF-8", b'{"true_false": true, "input": "\xff"}', "non-UTF-8 bytes"),
    ("missing field", line(without(meta_record(9), "true_false")), "missing field"),
    ("missing image", line(meta_record(9, image_path="gone.png")), "missing image"),
    ("corrupt image", line(meta_record(9, image_path="corrupt.png")), "unreadable image"),
    ("zero-byte image", line(meta_record(9, image_path="empty.png")), "zero-byte image"),
    ("huge image", line(meta_record(9, image_path="big.png")), "image too large"),
    ("bad label", line(meta_record(9, true_false="maybe")), "bad label"),
    ("label out of range", line(meta_record(9, true_false=2)), "bad label"),
    ("input not a string", line(meta_record(9, input=7)), "wrong type"),
    ("empty input", line(meta_record(9, input="  ")), "empty input"),
]


def write_lines(path, good, bad: bytes, at=2):
    lines = [line(r) for r in good]
    lines.insert(at, bad)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("case,bad,kind", TRAIN_BAD, ids=[c[0] for c in TRAIN_BAD])
@pytest.mark.parametrize("fmt", ["paper", "stepwise"])
def test_a_bad_train_record_is_skipped_and_counted(root, case, bad, kind, fmt):
    good = [train_record(i) for i in range(4)]
    path = write_lines(root / "train.jsonl", good, bad)
    skips = Skips("train")
    td = load_train(path, root, fmt, images=ImageCheck(MAX_PIXELS), skips=skips)
    got = skips.as_dict()
    assert (got["read"], got["skipped"], list(got["kinds"])) == (5, 1, [kind])
    assert got["kinds"][kind]["first"][0].startswith(f"{path}:3")
    assert td.ids == [r["id"] for r in good] and td.skipped == {kind: 1}  # every good record is used
    assert [s.image for s in td.samples] == [root / "im.png"] * 4


@pytest.mark.parametrize("case,bad,kind", META_BAD, ids=[c[0] for c in META_BAD])
def test_a_bad_meta_record_is_skipped_and_counted(root, case, bad, kind):
    good = [meta_record(i) for i in range(4)]
    path = write_lines(root / "meta.jsonl", good, bad)
    md = load_meta(path, root, images=ImageCheck(MAX_PIXELS))
    got = md.skips.as_dict()
    assert (got["read"], got["skipped"], list(got["kinds"])) == (5, 1, [kind])
    assert got["kinds"][kind]["first"][0].startswith(f"{path}:3")
    assert [s.question for s in md.samples] == [f"How many? ({i})" for i in range(4)]
    assert md.labels == [1.0, 0.0, 1.0, 0.0] and md.skipped == {kind: 1}


@pytest.mark.parametrize("rule", ["whole", "skip"])
def test_a_meta_record_without_steps_follows_the_rule_and_is_counted(root, rule):
    good = [meta_record(i) for i in range(4)]
    path = write_lines(root / "meta.jsonl", good, line(meta_record(9, input="Only the question?")))
    md = load_meta(path, root, rule)
    assert md.skips.total == 0  # not a bad record: the rule decides
    if rule == "whole":
        assert len(md.samples) == 5 and md.without_steps == 1 and md.samples[2].prefixes == [""]
    else:
        assert len(md.samples) == 4 and md.dropped.as_dict()["kinds"]["no steps"]["first"][0].startswith(f"{path}:3")


FILE_ERRORS = [  # (case, file content or None for no file, what the one-line error says)
    ("missing file", None, r"train\.jsonl: no such file"),
    ("empty file", b"", r"train\.jsonl: empty file"),
    ("blank lines only", b"\n  \n", r"train\.jsonl: empty file"),
    ("malformed JSON array", b'[\n{"a": 1},\n{"b": oops}\n]', r"train\.jsonl:3: malformed JSON"),
    ("non-UTF-8 in a JSON array", b'[\n{"a": 1},\n{"b": "\xff"}]', r"train\.jsonl:3: non-UTF-8"),
]


@pytest.mark.parametrize("case,content,error", FILE_ERRORS, ids=[c[0] for c in FILE_ERRORS])
@pytest.mark.parametrize("which", ["train", "meta"])
def test_an_unreadable_input_file_is_a_one_line_error(root, case, content, error, which):
    path = root / "train.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=error) as e:
        load_train(path, root, "paper") if which == "train" else load_meta(path, root)
    assert "\n" not in str(e.value)


def test_no_usable_record_is_an_error(root):
    path = write_lines(root / "train.jsonl", [], line(train_record(0, image_path="gone.png")), at=0)
    with pytest.raises(DataError, match=r"train\.jsonl: no usable train record .*missing image 1"):
        load_train(path, root, "paper")
    path = write_lines(root / "meta.jsonl", [], line(meta_record(0, input="Only a question")), at=0)
    with pytest.raises(DataError, match=r"meta\.jsonl: no usable meta record .*no steps 1"):
        load_meta(path, root, "skip")


def test_the_skip_ceiling_domains_lost_paths_and_device_line(root, tiny_models, capsys):
    """--max_skip_fraction turns a flood of skips into an error naming file:line; a domain that lost every record
    is in the printed line; --prm resolves against --path; the device and precision are printed."""
    write_reweighting_problem(root, per_domain=2)  # 3 domains x 2 questions x 2 steps = 12 train records
    with open(root / "train.jsonl", "a") as f:
        for i in range(2):
            f.write(json.dumps(train_record(i, dataset="ghost", image_path="gone.png")) + "\n")
    (root / "models").mkdir()
    (root / "models/prm").symlink_to(tiny_models["prm"])
    with pytest.raises(DataError, match=r"train\.jsonl:13 .*over the ceiling --max_skip_fraction 0\.1"):
        Reweighter(config(root, "models/prm"))
    r = Reweighter(config(root, "models/prm", "--max_skip_fraction", "0.2"))
    out = capsys.readouterr().out
    assert "skipped 2 of 14 records: missing image 2" in out
    assert "domain(s) left without a usable record, so without a weight: ghost (2 records skipped)" in out
    assert "PRM: device cpu, precision fp32" in out
    assert r.domains == ["clean_a", "clean_b", "noisy"] and r.train_data.lost_domains == {"ghost": 2}
    with pytest.raises(DataError, match=r"train\.jsonl:9: unknown domain.*noisy"):
        Reweighter(config(root, "models/prm", "--max_skip_fraction", "0.2", "--domains", "clean_a,clean_b",
                          "--out", "other"))


def test_a_failed_start_does_not_block_the_retry(root, tiny_models):
    write_reweighting_problem(root, per_domain=2)
    (root / "train.jsonl").write_text("")
    with pytest.raises(DataError, match="empty file"):
        Reweighter(config(root, tiny_models["prm"]))
    write_reweighting_problem(root, per_domain=2)
    Reweighter(config(root, tiny_models["prm"]))  # no --resume needed: the failed start left only the lock


def test_a_real_run_skips_corrupt_images_in_train_and_meta(root, tiny_models, capsys):
    """Before, the first batch that met an unreadable image aborted the run."""
    write_reweighting_problem(root, per_domain=3, image="im.png")  # 18 train records, 8 meta records
    with open(root / "train.jsonl", "a") as f:
        f.write(json.dumps(train_record(0, image_path="corrupt.png")) + "\n")
    with open(root / "meta.jsonl", "a") as f:
        f.write(json.dumps(meta_record(0, image_path="corrupt.png")) + "\n")
    s = train(config(root, tiny_models["prm"], "--iterations", "4", "--train_batch_size", "6", "--meta_batch_size",
                     "9", "--max_skip_fraction", "0.2", "--save_every", "2"))
    out = capsys.readouterr().out
    assert f"train {root / 'train.jsonl'}: skipped 1 of 19 records: unreadable image 1" in out
    assert f"meta {root / 'meta.jsonl'}: skipped 1 of 9 records: unreadable image 1" in out
    summary = json.loads((root / "run/summary.json").read_text())
    assert summary == s and (s["train_samples"], s["meta_records"]) == (18, 8)
    for which, n in (("train", 19), ("meta", 9)):
        kinds = s["skipped"][which]["kinds"]
        assert list(kinds) == ["unreadable image"] and kinds["unreadable image"]["first"][0].startswith(
            f"{root / (which + '.jsonl')}:{n} ({root / 'corrupt.png'}")
    mask = os.umask(0)
    os.umask(mask)
    for f in ("summary.json", "domain_weights.json", "log.jsonl", "checkpoints/step-4/state.pt",
              "checkpoints/step-4/domain_weights.json", "prm/prm_head.pt"):
        assert (root / "run" / f).stat().st_mode & 0o777 == 0o666 & ~mask, f
    assert sorted(p.name for p in (root / "run/checkpoints").iterdir()) == ["step-2", "step-4"]  # no temporary left


def test_one_writer_per_run_directory(root, tiny_models):
    """Two copies started together on one --out: one trains, the other is refused at once, naming the holder's pid,
    in one line; the run equals a single run's."""
    write_reweighting_problem(root, per_domain=3)
    args = ["--path", str(root), "--train", "train.jsonl", "--meta", "meta.jsonl", "--prm", str(tiny_models["prm"]),
            "--figs", "figs", "--gpu", "cpu", "--precision", "fp32", "--lr", "2e-3", "--meta_lr", "0.05",
            "--log_every", "5", "--save_every", "10", "--iterations", "20", "--train_batch_size", "2"]
    script = str(ROOT / "reweighting/train.py")
    procs = [subprocess.Popen([sys.executable, script, *args, "--out", "run"], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, out, err))
    assert sorted(rc for rc, _, _ in results) == [0, 1], results
    (_, won_out, _), = [r for r in results if r[0] == 0]
    (_, _, err), = [r for r in results if r[0] != 0]
    winner = next(p.pid for p, r in zip(procs, results) if r[0] == 0)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"being written by another process (pid {winner}" in err
    assert "PRM: device cpu, precision fp32" in won_out
    single = train(config(root, tiny_models["prm"], *args[args.index("--log_every"):], "--out", "single"))
    got = json.loads((root / "run/domain_weights.json").read_text())
    assert got.keys() == single["weights"].keys()
    assert all(abs(got[k] - single["weights"][k]) < 1e-5 for k in got), (got, single["weights"])
    rows = [json.loads(x) for x in (root / "run/log.jsonl").read_text().splitlines()]
    want = [json.loads(x) for x in (root / "single/log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [r["iteration"] for r in want] == list(range(5, 21, 5))
    assert all(abs(a["lower_loss"] - b["lower_loss"]) < 1e-5 for a, b in zip(rows, want))


# --- inference/meta_data.py ----------------------------------------------------------------------------------

def policy(q, s, ok, **kw):
    return {"id": q, "sample": s, "true_false": ok, "input": f"Question {q}?", "image_path": "im.png",
            "response": "Step 1: Look.\n\nStep 2: Count.\n\nFinal answer: 2", **kw}


def test_meta_data_with_no_meta_record_is_an_error_and_leaves_nothing(root):
    """Responses without a final answer give no meta record: a one-line error and no output, so the retry needs no
    --resume."""
    write_jsonl(root / "r.jsonl", [policy(q, s, s == 0, response="no answer") for q in range(3) for s in range(2)])
    p = subprocess.run([sys.executable, str(ROOT / "inference/meta_data.py"), "--path", str(root), "--responses",
                        "r.jsonl", "--out", "meta/meta.jsonl"], env=ENV, capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert "Traceback" not in p.stderr and "no meta record from 6 usable responses" in p.stderr
    assert "no final answer: 6" in p.stderr and not (root / "meta/meta.jsonl").exists()
    write_jsonl(root / "r.jsonl", [policy(q, s, s == 0) for q in range(3) for s in range(2)])
    meta, _ = load_script("inference/meta_data.py").main(["--path", str(root), "--responses", "r.jsonl",
                                                          "--out", "meta/meta.jsonl"])
    assert len(meta) == 6


def test_meta_data_counts_bad_images_and_duplicates_with_their_lines(root):
    recs = [policy(q, s, s == 0) for q in range(5) for s in range(2)]
    recs[3]["image_path"] = "corrupt.png"  # question 1 keeps only its right response
    recs.append(policy(4, 1, False))  # line 11: question 4's second response again
    recs.append(policy(5, 0, True, response="Step 1: Look."))  # line 12: no final answer, left out by the rule
    write_jsonl(root / "r.jsonl", recs)
    meta, stats = load_script("inference/meta_data.py").main(["--path", str(root), "--responses", "r.jsonl",
                                                              "--max_skip_fraction", "0.2"])
    out = root / "runs/meta/meta.jsonl"
    summary = json.loads(out.with_name("meta.jsonl.done").read_text())
    kinds = summary["skipped"]["kinds"]
    assert summary["records"] == len(meta) == 9 and summary["skipped"]["read"] == 12
    assert summary["dropped"]["kinds"]["no final answer"]["first"] == [f"{root / 'r.jsonl'}:12"]
    assert kinds["unreadable image"]["first"][0].startswith(f"{root / 'r.jsonl'}:4 ")
    assert kinds["duplicate response"]["first"][0].startswith(f"{root / 'r.jsonl'}:11 ")
    assert [(m["id"], m["true_false"]) for m in meta if m["id"] == 1] == [(1, True)]
    with pytest.raises(FileExistsError, match="--resume"):  # cfg.output: one writer, never an overwrite
        load_script("inference/meta_data.py").main(["--path", str(root), "--responses", "r.jsonl"])


def test_a_diverged_run_stops_at_the_first_non_finite_loss(root, tiny_models):
    """A NaN never reaches the log or the weights: the run stops with a one-line error naming the iteration."""
    write_reweighting_problem(root, per_domain=3, image="im.png")
    with pytest.raises(DataError, match=r"iteration \d+: .*(loss|weight of \w+) is (nan|inf).*training diverged"):
        train(config(root, tiny_models["prm"], "--iterations", "30", "--lr", "1e30", "--meta_lr", "1e30",
                     "--train_batch_size", "4", "--meta_batch_size", "4"))
    log = (root / "run/log.jsonl")
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    assert all(str(r["lower_loss"]) not in ("nan", "inf") for r in rows)
