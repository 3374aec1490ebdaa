import json
import os
import subprocess
import sys

import pytest

from dreamprm.io import AppendWriter, DataError, load_image, read_records, write_json, write_jsonl


def test_jsonl_and_json_array_read_alike(tmp_path):
    recs = [{"id": 1, "x": "a"}, {"id": 2, "x": "b"}]
    write_jsonl(tmp_path / "a.jsonl", recs)
    write_json(tmp_path / "a.json", recs)
    assert read_records(tmp_path / "a.jsonl") == recs == read_records(tmp_path / "a.json")


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": 1}\n\n{"id": 2,,}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed JSON"):
        read_records(p)


def test_non_object_line_and_missing_field_are_named(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: expected a JSON object, got list"):
        read_records(p)
    p.write_text('{"id": 1, "input": "q"}\n{"id": 2}\n')
    with pytest.raises(DataError, match=r"x\.jsonl: line 2: missing field\(s\) input"):
        read_records(p, required=["id", "input"])
    a = tmp_path / "arr.json"
    a.write_text('[{"input": 1}, {"id": 2}]')
    with pytest.raises(DataError, match=r"arr\.json: record 1: missing field\(s\) input"):
        read_records(a, required=["input"])


def test_malformed_json_array_and_empty_and_missing_file(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('[{"id": 1},\n {"id": }]')
    with pytest.raises(DataError, match=r"a\.json:2: malformed JSON"):
        read_records(p)
    (tmp_path / "e.jsonl").write_text("  \n")
    with pytest.raises(DataError, match="empty file"):
        read_records(tmp_path / "e.jsonl")
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "nope.jsonl")


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "sub" / "o.json"
    write_json(p, {"a": 1})
    write_json(p, {"b": 2})
    assert json.loads(p.read_text()) == {"b": 2}
    assert [f.name for f in p.parent.iterdir()] == ["o.json"]  # no temp file left behind


def test_append_writer_resumes_and_drops_torn_line(tmp_path):
    p = tmp_path / "out.jsonl"
    with AppendWriter(p, key=lambda r: r["id"]) as w:
        w.write({"id": "a"})
        w.write({"id": "b"})
    with open(p, "a") as f:
        f.write('{"id": "c", "trunc')  # a kill in the middle of a write
    with AppendWriter(p, key=lambda r: r["id"], resume=True) as w:
        assert w.n_resumed == 2 and w.done("a") and w.done("b") and not w.done("c")
        w.write({"id": "c"})
        with pytest.raises(ValueError, match="written twice"):
            w.write({"id": "a"})
    assert [r["id"] for r in read_records(p)] == ["a", "b", "c"]


def test_append_writer_refuses_to_clobber_without_resume(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_text('{"id": 1}\n')
    with pytest.raises(FileExistsError, match="--resume"):
        AppendWriter(p, key=lambda r: r["id"], resume=False)


def test_append_writer_survives_sigkill(tmp_path):
    p = tmp_path / "out.jsonl"
    code = (f"import os, signal\nfrom dreamprm.io import AppendWriter\n"
            f"w = AppendWriter({str(p)!r}, key=lambda r: r['i'])\n"
            "for i in range(5): w.write({'i': i})\nos.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -9
    assert [r["i"] for r in read_records(p)] == [0, 1, 2, 3, 4]


def test_load_image_resizes_and_names_bad_files(tmp_path, images):
    images[2].save(tmp_path / "big.png")  # 100 x 200
    im = load_image(tmp_path / "big.png", max_side=50)
    assert im.size == (25, 50) and im.mode == "RGB"
    assert load_image(tmp_path / "big.png").size == (100, 200)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.png: unreadable image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(DataError, match=r"missing\.png: image not found"):
        load_image(tmp_path / "missing.png")
