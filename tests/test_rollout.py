"""Stage 2 (inference/): rollouts on a small fixture, shards, resume, bad input, every script and --help."""
import json

import pytest

from dreamprm import shards
from dreamprm.backends import Backend, TransformersBackend
from dreamprm.cli import parse_args
from dreamprm.io import DataError, read_records
from dreamprm.rollout import POLICY_FIELDS, run
from conftest import load_script

SCRIPTS = ["mmpr", "mathvista", "wemath", "mathvision", "mmvet", "mmstar", "mmmu"]


@pytest.fixture(scope="module")
def policy(tiny_models):
    return TransformersBackend(str(tiny_models["policy"]), "cpu", "fp32", batch_size=2)


@pytest.fixture
def root(tmp_path, images):
    """data/mathvista.jsonl with 5 questions (one multiple choice) and their PNG images."""
    (tmp_path / "data" / "images").mkdir(parents=True)
    qs = []
    for i in range(5):
        images[i % len(images)].save(tmp_path / "data" / "images" / f"{i}.png")
        qs.append({"id": f"q{i}", "input": f"What is {i} + 1?", "image_path": f"data/images/{i}.png",
                   "ground_truth": str(i + 1), "dataset": "MathVista", "type": "free_form",
                   "hint": "Answer with an integer.", "options": None})
    qs[3].update(type="multi_choice", options=["3", "4", "5"], ground_truth="B")
    (tmp_path / "data" / "mathvista.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    return tmp_path


def mathvista(root, *extra):
    mod = load_script("inference/mathvista.py")
    cfg = parse_args(mod.MathVistaArgs, ["--path", str(root), "--policy", "unused", "--judge", "none", "--n", "2",
                                         "--temperature", "0", "--max_new_tokens", "6", "--batch_size", "2",
                                         "--gpu", "cpu", *extra])
    return mod, cfg


class Answers(Backend):
    """Answers "Final answer: <i + 1>" for even-numbered questions, a wrong one for odd; can crash."""

    def __init__(self, crash_after=None):
        self.calls, self.crash_after = 0, crash_after

    def generate(self, requests, n, temperature, max_new_tokens):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise RuntimeError("killed")
        out = []
        for r in requests:
            i = int(r.question["id"][1:])
            ans = ("B" if r.question["options"] else str(i + 1)) if i % 2 == 0 else "0"
            out.append([f"Step 1: read.\nStep 2: add.\n\nFinal answer: {ans}"] * n)
        return out


def test_rollouts_write_policy_records(root, policy):
    mod, cfg = mathvista(root)
    summary = run(cfg, mod.make_prompt, mod.make_input, backend=policy)
    out = root / "runs" / "rollouts" / "mathvista.jsonl"
    recs = read_records(out, required=POLICY_FIELDS)
    assert summary["records"] == len(recs) == 10 and shards.done_marker(out).exists()
    assert [(r["id"], r["sample"]) for r in recs] == [(f"q{i}", s) for i in range(5) for s in range(2)]
    assert all(isinstance(r["true_false"], bool) and isinstance(r["response"], str) for r in recs)
    assert recs[6]["input"] == "What is 3 + 1?\n(A) 3\n(B) 4\n(C) 5\nAnswer with an integer."
    assert recs[6]["options"] == ["3", "4", "5"] and recs[0]["image_path"] == "data/images/0.png"
    with pytest.raises(FileExistsError, match="pass --resume"):
        run(cfg, mod.make_prompt, mod.make_input, backend=policy)
    assert shards.done_marker(out).exists()  # a refused rerun leaves the finished output as it was


def test_answers_are_checked(root):
    mod, cfg = mathvista(root)
    run(cfg, mod.make_prompt, mod.make_input, backend=Answers())
    recs = read_records(root / "runs" / "rollouts" / "mathvista.jsonl")
    assert [r["true_false"] for r in recs[::2]] == [True, False, True, False, True]
    assert recs[8]["answer"] == "5" and recs[8]["judged_by"] == "rule"
    # "0" is no option of q3: the rules cannot decide, and without a judge model that counts as wrong
    assert recs[6]["answer"] == "0" and recs[6]["judged_by"] == "none" and recs[6]["true_false"] is False


def test_two_shards_merge_into_one_run(root, policy):
    mod, cfg = mathvista(root, "--out", "one.jsonl")
    run(cfg, mod.make_prompt, mod.make_input, backend=policy)
    for i in range(2):
        mod, cfg = mathvista(root, "--out", "two.jsonl", "--shard", f"{i}/2")
        run(cfg, mod.make_prompt, mod.make_input, backend=policy)
    with pytest.raises(DataError, match="not finished"):
        shards.done_marker(root / "two.shard-1-of-2.jsonl").unlink()
        shards.merge(root / "two.jsonl")
    shards.finalize(root / "two.shard-1-of-2.jsonl", lambda r: 0)
    shards.main(["--path", str(root), "--out", "two.jsonl"])
    assert (root / "two.jsonl").read_bytes() == (root / "one.jsonl").read_bytes()


def test_resume_after_a_crash_loses_and_duplicates_nothing(root):
    mod, cfg = mathvista(root, "--out", "full.jsonl")
    run(cfg, mod.make_prompt, mod.make_input, backend=Answers())
    mod, cfg = mathvista(root, "--out", "part.jsonl", "--batch_size", "1")  # 4 responses per backend call
    with pytest.raises(RuntimeError, match="killed"):
        run(cfg, mod.make_prompt, mod.make_input, backend=Answers(crash_after=1))
    part = root / "part.jsonl"
    assert len(read_records(part)) == 4 and not shards.done_marker(part).exists()
    with open(part, "a") as f:
        f.write('{"id": "q2", "sam')  # a line torn by the kill
    mod, cfg = mathvista(root, "--out", "part.jsonl", "--resume")
    assert run(cfg, mod.make_prompt, mod.make_input, backend=Answers())["sampled"] == 6
    assert part.read_bytes() == (root / "full.jsonl").read_bytes()


def test_bad_input_is_named_or_counted(root, capsys):
    (root / "data" / "images" / "2.png").unlink()
    mod, cfg = mathvista(root, "--max_skip_fraction", "0.5")
    summary = run(cfg, mod.make_prompt, mod.make_input, backend=Answers())
    assert summary["skipped"]["kinds"]["missing image"]["count"] == 1 and summary["records"] == 8
    assert "mathvista.jsonl:3 (" in summary["skipped"]["kinds"]["missing image"]["first"][0]
    assert "skipped 1 of 5 records: missing image 1" in capsys.readouterr().out
    out = root / "runs" / "rollouts" / "mathvista.jsonl"
    assert shards.read_marker(out)["skipped"]["kinds"] == summary["skipped"]["kinds"]
    with pytest.raises(DataError, match=r"missing image 1 .*over the ceiling --max_skip_fraction 0\.1"):
        run(mathvista(root, "--out", "other.jsonl")[1], mod.make_prompt, backend=Answers())
    assert not (root / "other.jsonl").exists()  # a refused run leaves nothing behind
    src = root / "data" / "mathvista.jsonl"
    lines = src.read_text().splitlines()
    src.write_text("\n".join(lines[:2] + ['{"id": "q9", "input": '] + lines[2:]) + "\n")
    with pytest.raises(DataError, match=r"malformed JSON 1 \(e\.g\. \S+mathvista\.jsonl:3 "):
        run(mathvista(root, "--resume", "--max_skip_fraction", "0")[1], mod.make_prompt, backend=Answers())
    src.write_text("")
    with pytest.raises(DataError, match="empty file"):
        run(mathvista(root, "--resume")[1], mod.make_prompt, backend=Answers())


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_dataset_script_builds_its_prompt(name):
    mod = load_script(f"inference/{name}.py")
    cfg_cls = next(v for k, v in vars(mod).items() if k.endswith("Args") and k != "RolloutArgs")
    cfg = parse_args(cfg_cls, [])
    assert cfg.n == {"mmpr": 1, "mmmu": 4}.get(name, 8) and cfg.dataset == name
    assert cfg.max_new_tokens == (2048 if name == "mathvision" else 1024)  # the released per-benchmark budgets
    assert cfg.questions_path().name == f"{name}.jsonl"
    q = {"id": 1, "input": "Which is larger?", "ground_truth": "B", "options": ["2", "3"], "hint": "Pick one.",
         "image_path": "x.png", "dataset": "geos"}
    prompt = mod.make_prompt(q)
    assert prompt.rstrip().endswith("Which is larger?\n(A) 2\n(B) 3\nPick one.") and "Final answer: ..." in prompt
    if name == "mmvet":
        assert mod.truth({"ground_truth": "2004<OR>2005"}) == ("2004 or 2005", None)


def _help_targets():
    yield "dreamprm.shards", lambda: __import__("dreamprm.shards", fromlist=["main"]).main
    for rel in [f"inference/{s}.py" for s in SCRIPTS] + ["inference/meta_data.py", "MC/tree.py", "MC/estimate.py",
                                                          "MC/train_data.py", "MC/export_trl.py"]:
        yield rel, (lambda rel=rel: load_script(rel).main)


@pytest.mark.parametrize("name,get_main", list(_help_targets()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_command_has_help(name, get_main, capsys):
    with pytest.raises(SystemExit) as e:
        get_main()(["--help"])
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out
