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
    with pytest.raises(DataError, match=r"x\.jsonl:2: not a JSON object: got list"):
        read_records(p)
    p.write_text('{"id": 1, "input": "q"}\n{"id": 2}\n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: missing field: input"):
        read_records(p, required=["id", "input"])
    a = tmp_path / "arr.json"
    a.write_text('[{"input": 1},\n {"id": 2}]')
    with pytest.raises(DataError, match=r"arr\.json:2: missing field: input"):
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


# --- outside-world inputs: skips, numbers, images, locks, modes ----------------------------------------

from dreamprm.io import (BadRecord, ImageCheck, OutputLocked, Skips, lock_output, lock_path, number,  # noqa: E402
                         release_output, where)


def test_skips_count_each_bad_line_by_kind_with_its_location(tmp_path):
    p = tmp_path / "hand.jsonl"
    p.write_bytes(b'{"id": 1, "x": 0.5}\n{"id": 2,,}\n\xff\xfe{"id": 3}\n[4]\n{"x": 1}\n'
                  b'{"id": 6, "x": NaN}\n{"id": 7, "x": "0.5"}\n{"id": 8, "x": 1}\n')
    skips = Skips(p)
    recs = read_records(p, required=["id"], check=lambda r: number(r, "x", 0, 1), skips=skips)
    assert [r["id"] for r in recs] == [1, 8] and where(recs[1]) == f"{p}:8"
    assert skips.seen == 8 and skips.total == 6
    assert dict(skips.counts) == {"malformed JSON": 1, "non-UTF-8 bytes": 1, "not a JSON object": 1,
                                  "missing field": 1, "not a finite number": 1, "wrong type": 1}
    assert skips.first["malformed JSON"] == [f"{p}:2 (Expecting property name enclosed in double quotes at column 10)"]
    assert f"{p}:6" in skips.first["not a finite number"][0] and "skipped 6 of 8 records" in skips.line()
    summary = skips.as_dict()
    assert summary["kinds"]["wrong type"] == {"count": 1, "first": [f"{p}:7 (x must be a number, got '0.5')"]}
    with pytest.raises(DataError, match=r"hand\.jsonl: skipped 6 of 8 .* over the ceiling --max_skip_fraction 0.5"):
        skips.check(0.5)
    skips.check(0.8)
    strict = tmp_path / "strict.jsonl"  # without Skips a reader stops at the first bad line, named
    strict.write_bytes(b'{"id": 1}\n\n\xff{"id": 3}\n')
    with pytest.raises(DataError, match=r"strict\.jsonl:3: non-UTF-8 bytes"):
        read_records(strict)


def test_every_record_is_skipped_is_an_error_at_any_ceiling(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"y": 1}\n')
    skips = Skips(p)
    assert read_records(p, required=["x"], skips=skips) == []
    with pytest.raises(DataError, match="skipped 1 of 1"):
        skips.check(1.0)


def test_json_array_records_carry_their_line_and_non_utf8_is_named(tmp_path):
    a = tmp_path / "released.json"
    a.write_text('[\n  {"id": 1},\n  {"id": 2,\n   "x": [1, 2]},\n  {"id": 3}\n]\n')
    recs = read_records(a)
    assert [where(r) for r in recs] == [f"{a}:2", f"{a}:3", f"{a}:5"]
    assert recs == [{"id": 1}, {"id": 2, "x": [1, 2]}, {"id": 3}]
    a.write_bytes(b'[{"id": 1},\n{"id": "\xe9"}]')
    with pytest.raises(DataError, match=r"released\.json:2: non-UTF-8 bytes"):
        read_records(a)
    a.write_text('[{"id": 1}] trailing')
    with pytest.raises(DataError, match="extra data"):
        read_records(a)
    a.write_bytes(b'\xef\xbb\xbf[{"id": 1}]')  # a byte-order mark from an editor is not an error
    assert read_records(a) == [{"id": 1}]
    a.write_text("[]")
    assert read_records(a) == []


def test_number_checks_type_finiteness_range_and_whole_numbers():
    assert number({"a": 3}, "a", 0, 5, integer=True) == 3
    for value, kind in ((True, "wrong type"), ("1", "wrong type"), (None, "wrong type"), (float("nan"), "not a finite"),
                        (float("inf"), "not a finite"), (1.5, "out of range"), (-0.1, "out of range")):
        with pytest.raises(BadRecord, match=kind):
            number({"a": value}, "a", 0, 1)
    with pytest.raises(BadRecord, match="whole number"):
        number({"a": 2.5}, "a", integer=True)


def test_image_check_names_each_kind_once(tmp_path, images):
    images[0].save(tmp_path / "ok.png")
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    full = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(full[: len(full) // 2])  # header fine, data truncated
    from PIL import Image

    Image.new("L", (3000, 3000)).save(tmp_path / "huge.png")
    check = ImageCheck(max_pixels=1_000_000)
    assert check.problem(tmp_path / "ok.png") is None
    kinds = {n: check.problem(tmp_path / n).kind for n in ("nope.png", "zero.png", "junk.png", "cut.png", "huge.png")}
    assert kinds == {"nope.png": "missing image", "zero.png": "zero-byte image", "junk.png": "unreadable image",
                     "cut.png": "unreadable image", "huge.png": "image too large"}
    assert "3000 x 3000" in check.problem(tmp_path / "huge.png").detail
    (tmp_path / "junk.png").unlink()
    assert check.problem(tmp_path / "junk.png").kind == "unreadable image"  # checked once, then remembered
    assert ImageCheck(max_pixels=10_000_000).problem(tmp_path / "huge.png") is None


def test_a_second_process_cannot_take_an_output_and_a_killed_holder_frees_it(tmp_path):
    out = tmp_path / "out.jsonl"
    hold = ("import sys, time\nfrom dreamprm.io import lock_output\nlock_output(sys.argv[1])\n"
            "print('held', flush=True)\ntime.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=rf"being written by another process \(pid {holder.pid}"):
            lock_output(out)
    finally:
        holder.kill()
        holder.wait()
    lock_output(out)  # the kill released it: nothing blocks the retry
    lock_output(out)  # re-entrant in one process
    release_output(out)


def test_a_rival_refused_before_the_holder_wrote_its_pid_still_names_it(tmp_path):
    """The holder takes the flock, then writes its pid: a rival refused in between (two copies started at
    once) waits for the pid instead of naming "unknown", or a finished earlier holder's stale pid."""
    out = tmp_path / "out.jsonl"
    lock_output(out)
    release_output(out)  # an earlier holder finished: its pid must not linger
    assert lock_path(out).read_text() == ""
    hold = ("import os, sys, time\nfrom filelock import FileLock\nfrom dreamprm.io import lock_path\n"
            "f = lock_path(sys.argv[1]); lock = FileLock(str(f), timeout=0); lock.acquire()\n"
            "print('held', flush=True); time.sleep(0.5); f.write_text(f'{os.getpid()}\\n'); time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=rf"\(pid {holder.pid},"):
            lock_output(out)
    finally:
        holder.kill()
        holder.wait()


def test_atomic_files_get_the_umask_mode_and_nan_is_never_written(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        write_jsonl(tmp_path / "b.jsonl", [{"a": 1}])
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.jsonl").stat().st_mode & 0o777 == 0o644
    with pytest.raises(ValueError):
        write_jsonl(tmp_path / "c.jsonl", [{"score": float("nan")}])
    with AppendWriter(tmp_path / "d.jsonl", key=lambda r: r["i"]) as w, pytest.raises(ValueError):
        w.write({"i": 1, "score": float("inf")})


def test_append_writer_creates_its_file_at_the_first_record(tmp_path):
    p = tmp_path / "out.jsonl"
    with AppendWriter(p, key=lambda r: r["id"], resume=False):
        pass  # a run that fails before its first record leaves no file behind
    assert not p.exists()
    p.write_text("")  # an empty leftover does not demand --resume either
    with AppendWriter(p, key=lambda r: r["id"], resume=False) as w:
        w.write({"id": 1})
    assert read_records(p) == [{"id": 1}]
