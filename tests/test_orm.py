"""The ORM baseline's train data (dreamprm/orm.py, MC/orm_data.py) on hand-written policy records."""
import json
import runpy
from pathlib import Path

import pytest

from dreamprm.io import BadRecord, DataError
from dreamprm.shards import read_marker
from dreamprm.orm import orm_records
from dreamprm.samples import load_train

ROOT = Path(__file__).resolve().parents[1]
FULL = "Step 1: Look.\n\nStep 2: Count: 3.\n\nFinal answer: 3"


def rec(qid, response, tf, sample=0, image=None, dataset="ai2d"):
    return {"id": qid, "sample": sample, "response": response, "input": f"Question {qid}?", "true_false": tf,
            "image_path": image, "dataset": dataset, "ground_truth": "3"}


def test_records_labels_and_what_is_skipped():
    records = [rec("a", FULL, True), rec("b", FULL, "false"), rec("c", FULL, "True "), rec("d", FULL, 0),
               rec("e", "Step 1: Look.\n\nNo answer given.", True),  # no final answer: skipped
               rec("f", "It is 3. Final answer: 3", True),  # no steps: kept by default
               rec("g", FULL, True, image="img/gone.png"), rec("h", FULL, False, image="img/here.png")]
    out, skipped = orm_records(records, image_problem=lambda p: None if p == "img/here.png" else BadRecord("missing image", p))
    assert [r["id"] for r in out] == ["a", "b", "c", "d", "f", "h"]
    assert [r["accuracy"] for r in out] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert all(type(r["accuracy"]) is float for r in out)
    assert skipped == {"no final answer": 1, "missing image": 1}
    a = out[0]
    assert a["add"] == FULL and a["sid"] == 0 and a["input"] == "Question a?" and a["ground_truth"] == "3"
    assert (a["sample"], a["dataset"], a["image_path"]) == (0, "ai2d", None)
    # responses without steps can be dropped too
    out, skipped = orm_records(records, image_problem=lambda p: None if p == "img/here.png" else BadRecord("missing image", p), require_steps=True)
    assert "f" not in [r["id"] for r in out] and skipped["no steps"] == 1


def test_bad_labels_and_repeated_responses_are_errors():
    with pytest.raises(DataError, match="record 2.*true_false"):
        orm_records([rec("a", FULL, True), rec("b", FULL, "maybe")])
    with pytest.raises(DataError, match="appears twice"):
        orm_records([rec("a", FULL, True), rec("a", FULL, False)])
    out, _ = orm_records([rec("a", FULL, True), rec("a", FULL, False, sample=1)])  # two samples of one question
    assert [r["sample"] for r in out] == [0, 1]


def test_cap_per_domain_is_seeded_and_keeps_input_order():
    records = [rec(f"q{i}", FULL, i % 2 == 0, dataset="ai2d" if i < 10 else "CLEVR") for i in range(14)]
    out, skipped = orm_records(records, per_domain=3, seed=7)
    ids = [r["id"] for r in out]
    assert len(ids) == 6 and ids == sorted(ids, key=lambda x: int(x[1:]))
    assert sum(int(x[1:]) < 10 for x in ids) == 3 and skipped == {"over the cap of 3 per domain": 8}
    assert orm_records(records, per_domain=3, seed=7)[0] == out
    assert orm_records(records)[0] == orm_records(records, per_domain=100)[0]  # 0 or a high cap: the data as is


def test_the_trainer_reads_them_as_one_whole_response_per_sample(tmp_path):
    out, _ = orm_records([rec("a", FULL, True), rec("b", "Final answer: 4", False, dataset="geos")])
    path = tmp_path / "orm.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    data = load_train(path, tmp_path, "paper")
    assert [s.prefixes for s in data.samples] == [[FULL], ["Final answer: 4"]]
    assert data.labels == [[1.0], [0.0]] and data.domains == ["ai2d", "geos"]


def test_cli_writes_refuses_to_overwrite_and_has_help(tmp_path, capsys, images):
    (tmp_path / "img").mkdir()
    images[0].save(tmp_path / "img/here.png")
    src = tmp_path / "rollouts.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [rec("a", FULL, True), rec("b", "no answer", False),
                                                          rec("c", FULL, False, image="img/here.png"),
                                                          rec("d", FULL, True, image="img/gone.png")]))
    cli = runpy.run_path(str(ROOT / "MC" / "orm_data.py"), run_name="imported")
    args = ["--path", str(tmp_path), "--responses", "rollouts.jsonl", "--out", "orm/train.jsonl",
            "--max_skip_fraction", "0.5"]
    with pytest.raises(DataError, match=r"skipped 2 of 4 records: .*over the ceiling"):  # the default 0.1
        cli["main"](args[:-2])
    assert not (tmp_path / "orm/train.jsonl").exists()  # nothing written that would block the retry
    train, summary = cli["main"](args)
    written = [json.loads(x) for x in (tmp_path / "orm/train.jsonl").read_text().splitlines()]
    assert written == train and [r["id"] for r in written] == ["a", "c"]
    kinds = summary["skipped"]["kinds"]
    assert {k: v["count"] for k, v in kinds.items()} == {"no final answer": 1, "missing image": 1}
    assert kinds["missing image"]["first"] == [f"{src}:4 ({tmp_path / 'img/gone.png'})"]
    assert read_marker(tmp_path / "orm/train.jsonl") == summary
    with pytest.raises(FileExistsError, match="exists"):
        cli["main"](args)
    cli["main"](args + ["--resume"])  # rebuilt: the same records
    assert [json.loads(x) for x in (tmp_path / "orm/train.jsonl").read_text().splitlines()] == written
    with pytest.raises(SystemExit) as e:
        cli["main"](["--help"])
    assert e.value.code == 0 and "--per_domain" in capsys.readouterr().out
