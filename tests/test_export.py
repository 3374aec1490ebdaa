"""MC label exports (dreamprm/export.py, MC/export_trl.py, MC/export_conversations.py), read the way the
tools they are meant for read them."""
import json

import pytest

from dreamprm import shards
from dreamprm.export import DEFAULT_THRESHOLD, IMAGE, step_text, to_conversations, to_trl
from dreamprm.io import DataError, read_records, write_jsonl
from dreamprm.mc import build_tree
from conftest import load_script

trl_cli = load_script("MC/export_trl.py")
conv_cli = load_script("MC/export_conversations.py")

ACC = {"q1": [1.0, 0.75, 0.5, 0.0625], "q2": [0.9375, 0.25, 0.0]}  # per response, by step


def released(qid: str, accs: list[float], image="img/1.png") -> list[dict]:
    """Nodes of one response in the released train format: `add` joined by "\\n", no trailing separator."""
    steps = [f"Step {k}: part {k} of {qid}." for k in range(1, len(accs) + 1)]
    return [{"id": qid, "sid": k, "input": f"What is {qid}?", "add": "\n".join(steps[:k]), "ground_truth": "4",
             "image_path": image, "dataset": "geos", "score": round(a * 16), "times": 16, "accuracy": a}
            for k, a in enumerate(accs, 1)]


@pytest.fixture
def nodes_file(tmp_path):
    write_jsonl(tmp_path / "nodes.jsonl", [n for q, a in ACC.items() for n in released(q, a)])
    return tmp_path


def trl_read(row: dict) -> list[int]:
    """What TRL's PRMTrainer.tokenize_row makes of a row's labels (trl 0.13 .. 1.x): int() of each."""
    assert len(row["completions"]) == len(row["labels"])  # it zips them with strict=True
    return [int(label) for label in row["labels"]]


def test_trl_default_is_read_as_meant_and_soft_labels_are_floored(nodes_file, capsys):
    trl_cli.main(["--path", str(nodes_file), "--nodes", "nodes.jsonl"])
    rows = read_records(nodes_file / "runs" / "mc" / "trl.jsonl")
    assert [trl_read(r) for r in rows] == [[int(a > DEFAULT_THRESHOLD) for a in ACC[q]] for q in ACC]
    assert [trl_read(r) for r in rows] == [[1, 1, 0, 0], [1, 0, 0]]
    assert {k: rows[0][k] for k in ("id", "sample", "image_path", "dataset")} == \
        {"id": "q1", "sample": 0, "image_path": "img/1.png", "dataset": "geos"}
    assert "(3 true, 4 false: accuracy > 0.5)" in capsys.readouterr().out
    # --threshold 0 is Math-Shepherd's hard estimate: every step some rollout got right is a 1
    trl_cli.main(["--path", str(nodes_file), "--nodes", "nodes.jsonl", "--out", "t0.jsonl", "--threshold", "0"])
    assert [trl_read(r) for r in read_records(nodes_file / "t0.jsonl")] == [[1, 1, 1, 1], [1, 1, 0]]
    # the failure mode --soft_labels warns about: int() keeps only 1.0, every other accuracy reads as wrong
    trl_cli.main(["--path", str(nodes_file), "--nodes", "nodes.jsonl", "--out", "soft.jsonl", "--soft_labels"])
    soft = read_records(nodes_file / "soft.jsonl")
    assert [r["labels"] for r in soft] == list(ACC.values())
    assert [trl_read(r) for r in soft] == [[1, 0, 0, 0], [0, 0, 0]]
    assert "int()" in capsys.readouterr().err


def test_conversations_one_judged_turn_per_step(nodes_file):
    text_only = released("q3", [0.5, 1.0], image=None)
    write_jsonl(nodes_file / "more.jsonl", read_records(nodes_file / "nodes.jsonl") + text_only)
    conv_cli.main(["--path", str(nodes_file), "--nodes", "more.jsonl"])
    rows = read_records(nodes_file / "runs" / "mc" / "conversations.jsonl")
    assert [r["id"] for r in rows] == ["q1-0", "q2-0", "q3-0"]  # unique per response
    for row, accs in zip(rows, [ACC["q1"], ACC["q2"], [0.5, 1.0]]):
        system, *turns = row["conversations"]
        assert system["from"] == "system"
        assert [t["from"] for t in turns] == ["human", "gpt"] * len(accs)
        assert [t["value"] for t in turns[1::2]] == ["+" if a > DEFAULT_THRESHOLD else "-" for a in accs]
        humans = [t["value"] for t in turns[::2]]
        assert humans[1:] == [f"Step {k}: part {k} of {row['question_id']}." for k in range(2, len(accs) + 1)]
        assert f"What is {row['question_id']}?" in humans[0] and humans[0].endswith("Step 1: part 1 of "
                                                                                    f"{row['question_id']}.")
        placeholders = sum(t["value"].count(IMAGE) for t in row["conversations"])
        if "image" in row:
            assert placeholders == 1 and humans[0].startswith(IMAGE) and row["image"] == "img/1.png"
        else:  # InternVL reads a row without `image` as text-only: no placeholder either
            assert placeholders == 0 and row["question_id"] == "q3"
        assert "dataset" not in row and row["domain"] == "geos"
    # a .json name writes one JSON array (DreamPRM-1.5 reads the file with json.load)
    conv_cli.main(["--path", str(nodes_file), "--nodes", "nodes.jsonl", "--out", "c.json", "--threshold", "0"])
    arr = json.loads((nodes_file / "c.json").read_text())
    assert [[t["value"] for t in r["conversations"][2::2]] for r in arr] == [["+"] * 4, ["+", "+", "-"]]


def test_released_and_tree_prefixes_give_the_same_steps():
    response = "Step 1: part 1 of q1.\n\nStep 2: part 2 of q1.\n\nStep 3: part 3 of q1.\n\nFinal answer: 4"
    tree, _ = build_tree([{"id": "q1", "response": response, "input": "What is q1?", "true_false": True,
                           "ground_truth": "4", "image_path": "img/1.png", "dataset": "geos"}])
    assert tree[1]["add"].endswith("\n\n")  # tree prefixes keep the separator; the released ones do not
    hand = released("q1", [1.0, 1.0, 1.0])
    assert to_trl(tree)[0][0]["completions"] == to_trl(hand)[0][0]["completions"] == \
        ["Step 1: part 1 of q1.", "Step 2: part 2 of q1.", "Step 3: part 3 of q1."]
    assert to_conversations(tree)[0] == to_conversations(hand)[0]
    assert step_text("Step 1: a\n\n", "Step 1: a\n\nStep 2: b\n\n") == step_text("Step 1: a", "Step 1: a\nStep 2: b")
    assert step_text("Step 1: a", "Step 9: other") is None


def test_gaps_are_cut_and_bad_records_named(nodes_file):
    nodes = [n for n in read_records(nodes_file / "nodes.jsonl") if (n["id"], n["sid"]) != ("q1", 3)]
    rows, skipped = to_conversations(nodes)
    assert [len(r["conversations"]) for r in rows] == [1 + 2 * 2, 1 + 2 * 3]
    assert sum(skipped.values()) == 1
    for bad, kind in [("0.5", "wrong type"), (1.5, "out of range"), (None, "wrong type"), (True, "wrong type")]:
        recs = read_records(nodes_file / "nodes.jsonl")
        recs[4]["accuracy"] = bad
        write_jsonl(nodes_file / "bad.jsonl", recs)
        with pytest.raises(DataError, match=rf"nodes\.jsonl:5: {kind}: accuracy"):
            to_trl(recs)  # records read from a file carry their file:line
        with pytest.raises(DataError, match=rf"^nodes: record 5: {kind}: accuracy"):
            to_trl([dict(r) for r in recs])  # others are numbered
        for cli in (trl_cli, conv_cli):
            # one bad node of seven is over the default ceiling: one line naming file:line
            with pytest.raises(DataError, match=rf"{kind} 1 \(e\.g\. \S*bad\.jsonl:5 \(accuracy") as e:
                cli.main(["--path", str(nodes_file), "--nodes", "bad.jsonl", "--out", "x.jsonl"])
            assert "\n" not in str(e.value) and not (nodes_file / "x.jsonl").exists()
    # under a raised ceiling the bad node is skipped and counted; its response is cut at it (q2 starts there)
    rows = trl_cli.main(["--path", str(nodes_file), "--nodes", "bad.jsonl", "--out", "y.jsonl",
                         "--max_skip_fraction", "0.5"])
    assert [r["id"] for r in rows] == ["q1"]
    marker = shards.read_marker(nodes_file / "y.jsonl")
    assert marker["records"] == 1 and marker["skipped"]["kinds"]["wrong type"]["first"][0].startswith(
        f"{nodes_file / 'bad.jsonl'}:5 ")
    (nodes_file / "torn.jsonl").write_text((nodes_file / "nodes.jsonl").read_text() + "{oops\n")
    with pytest.raises(DataError, match=r"malformed JSON 1 \(e\.g\. \S*torn\.jsonl:8 "):
        conv_cli.main(["--path", str(nodes_file), "--nodes", "torn.jsonl", "--out", "x.jsonl"])


@pytest.mark.parametrize("cli", [trl_cli, conv_cli], ids=["export_trl", "export_conversations"])
def test_cli_help_and_no_overwrite(cli, nodes_file, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0 and "--threshold" in capsys.readouterr().out
    args = ["--path", str(nodes_file), "--nodes", "nodes.jsonl", "--out", "o.jsonl"]
    cli.main(args)
    with pytest.raises(FileExistsError, match="exists; pass --resume"):
        cli.main(args)
    cli.main(args + ["--resume"])
