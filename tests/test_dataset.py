"""Stage 1 (dataset/): every converter on small fixtures written in its source's own hub schema.

Fixtures are parquet files written with `datasets` (image columns stored as {"bytes", "path"}, as HF
exports them) or JSON/JSONL + image folders, each with broken rows (missing image, empty answer, bad image
bytes) that must be counted and reported. Nothing here touches the network.
"""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before `datasets` is imported anywhere in this module
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from dataset import prepare  # noqa: E402
from dataset.sources import mmmu, wemath  # noqa: E402
from dreamprm.data import Skip, SourceWriter, encode_image, image_bytes  # noqa: E402
from dreamprm.io import DataError, load_image, read_records  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ["id", "input", "image_path", "ground_truth", "dataset"]
BENCHMARKS = ["mathvista", "wemath", "mathvision", "mmvet", "mmstar", "mmmu"]


def img(fmt="PNG", color=(200, 30, 30), size=(12, 9)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def hf(data: bytes, name="x.png") -> dict:
    return {"bytes": data, "path": name}


def parquet(path: Path, columns: dict, image_cols=()) -> Path:
    from datasets import Dataset, Image as HFImage

    ds = Dataset.from_dict(columns)
    for c in image_cols:
        ds = ds.cast_column(c, HFImage())
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))
    return path


def make_sources(d: Path) -> dict[str, Path]:
    """One small copy of every source in its own schema; returns SOURCE -> local path."""
    mv_query = ("Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at "
                "the end.\nQuestion: Which bar is taller?\nChoices:\n(A) left\n(B) right")
    n = 5
    mathvista = parquet(d / "mathvista/testmini-00000-of-00001.parquet", {
        "pid": ["1", "2", "3", "4", "5"],
        "question": ["Which bar is taller?", "What is the slope?", "q3", "q4", "q5"],
        "image": [f"images/{i}.jpg" for i in range(1, n + 1)],
        "decoded_image": [hf(img()), hf(img("JPEG")), None, hf(b"not an image"), hf(img())],
        "choices": [["left", "right"], None, None, None, None],
        "unit": [None, "", None, None, None],
        "precision": [None, 1.0, None, None, None],
        "answer": ["right", "1.5", "3", "4", ""],
        "question_type": ["multi_choice", "free_form", "free_form", "free_form", "free_form"],
        "answer_type": ["text", "float", "integer", "integer", "integer"],
        "metadata": [{"category": "math-targeted-vqa", "language": "english", "skills": ["arithmetic"]}] * n,
        "query": [mv_query, "Hint: Please answer the question requiring a floating-point number with one decimal "
                  "place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.\nQuestion: What is the slope?",
                  "q3", "q4", "q5"],
    }, image_cols=["decoded_image"])
    wemath_file = parquet(d / "wemath/testmini.parquet", {
        "ID": ["7", "7", "8"], "split": ["testmini"] * 3, "knowledge concept": ["Angles"] * 3,
        "question": ["Find angle 1.", "Find angle 2.", "Find angle 3."],
        "option": ["A. 30°; B. 45°; C. 60°; D. 90°; E. No correct answer", "A. 1; B. 2", "A. 1; B. 2"],
        "answer": ["B", "A", "A"], "image_path": [hf(img()), hf(img("JPEG")), None],
        "key": ["2steps_1", "2steps_multi", "1step"], "question number": [1, 2, 3],
        "knowledge concept description": ["..."] * 3,
    }, image_cols=["image_path"])
    mvis = d / "mathvision"
    (mvis / "images").mkdir(parents=True)
    (mvis / "images/1.jpg").write_bytes(img("JPEG"))
    (mvis / "images/2.png").write_bytes(img())
    rows = [{"id": "1", "question": "<image1> How many dots?", "options": [], "image": "images/1.jpg",
             "answer": "4", "solution": None, "level": 2, "subject": "counting"},
            {"id": "2", "question": "<image1> Which shape?", "options": ["a", "b", "c", "d", "e"],
             "image": "images/2.png", "answer": "C", "solution": None, "level": 1, "subject": "logic"},
            {"id": "3", "question": "q3", "options": [], "image": "images/gone.png", "answer": "1",
             "solution": None, "level": 1, "subject": "logic"}]
    (mvis / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mmvet = parquet(d / "mmvet/test.parquet", {
        "question_id": ["v1_0", "v1_1"], "image": [hf(img()), hf(img())],
        "question": ["What is x in the equation?", " "], "answer": ["-1<AND>-5", "cat"],
        "capability": ["ocr,math", "rec"],
    }, image_cols=["image"])
    gif = io.BytesIO()
    Image.new("P", (8, 8), 3).save(gif, format="GIF")
    mmstar = parquet(d / "mmstar/mmstar.parquet", {
        "index": [0, 1], "question": ["Which is red?\nOptions: A: the ball, B: the box", "Count.\nOptions: A: 1, B: 2"],
        "image": [hf(gif.getvalue(), "0.gif"), hf(img())], "answer": ["A", "B"],
        "category": ["coarse perception"] * 2, "l2_category": ["image scene and topic"] * 2,
        "meta_info": [{"source": "MMBench", "split": "val", "image_path": "0.gif"}] * 2,
    }, image_cols=["image"])
    none7 = {f"image_{k}": [None, None] for k in range(3, 8)}
    common = {"explanation": ["", ""], "img_type": ["['Tables']"] * 2, "topic_difficulty": ["Easy"] * 2,
              "subfield": ["Financial Accounting"] * 2}
    parquet(d / "mmmu/Accounting/validation-00000-of-00001.parquet", {
        "id": ["validation_Accounting_1", "validation_Accounting_2"],
        "question": ["<image 1> What is the missing value?", "Compare <image 1> and <image 2>. How many?"],
        "options": ["['$10,000', '$20,000']", "[]"], "answer": ["B", "42"],
        "question_type": ["multiple-choice", "open"],
        "image_1": [hf(img()), hf(img())], "image_2": [None, hf(img("JPEG", (0, 90, 0)))], **none7, **common,
    }, image_cols=[f"image_{k}" for k in range(1, 8)])
    parquet(d / "mmmu/Art/validation-00000-of-00001.parquet", {
        "id": ["validation_Art_1", "validation_Art_2"], "question": ["<image 1> Which style?", "Which era?"],
        "options": ["['Baroque', 'Rococo'", "['a', 'b']"], "answer": ["A", "A"],
        "question_type": ["multiple-choice"] * 2,
        "image_1": [hf(img()), None], "image_2": [None, None], **none7, **common,
    }, image_cols=[f"image_{k}" for k in range(1, 8)])
    return {"mathvista": mathvista, "wemath": wemath_file, "mathvision": mvis, "mmvet": mmvet, "mmstar": mmstar,
            "mmmu": d / "mmmu", "mmpr": make_mmpr(d / "MMPR")}


def make_mmpr(root: Path) -> Path:
    """MMPR's layout: meta.json paths start at the folder holding MMPR/ ("MMPR/images/AI2D")."""
    meta, ok = {}, img()
    specs = {  # meta key (file stem) -> (image folder, lines)
        "ai2d_train_12k_en_20240410_extracted_pairs_vqa_correctness_rules": ("AI2D", [
            *[{"image": f"{i}.png", "question": f"<image>\nWhat is part {i}?", "answer_gt": "B",
               "chosen": "...", "rejected": "..."} for i in range(6)],
            {"image": "0.png", "question": "<image>\nWhat is part 0?", "answer_gt": "B"},  # a second pair
            {"image": "gone.png", "question": "Where?", "answer_gt": "A"},
            {"image": "bad.png", "question": "Bad bytes?", "answer_gt": "A"},
            {"image": "1.png", "question": "No answer?", "answer_gt": ""},
        ]),
        # A name from another MMPR version: found by prefix.
        "geos_en_20250101_extracted_pairs_vqa_correctness_rules": ("GEOS", [
            {"image": "g.jpg", "question": "Find x.", "answer_gt": "12"}]),
        "CLEVR_math_en_20240402_extracted_pairs_vqa_correctness_rules": ("CLEVR", [
            {"image": ["c1.png", "c2.png"], "question": "How many cubes are left?", "answer_gt": "3"}]),
    }
    for key, (folder, lines) in specs.items():
        images = root / "images" / folder
        images.mkdir(parents=True)
        for line in lines:
            for name in line["image"] if isinstance(line["image"], list) else [line["image"]]:
                if name == "bad.png":
                    (images / name).write_bytes(b"\x89PNG\r\n\x1a\n broken")
                elif name != "gone.png":
                    (images / name).write_bytes(img("JPEG") if name.endswith(".jpg") else ok)
        ann = root / "annotations" / f"{key}.jsonl"
        ann.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(x) + "\n" for x in lines)
        ann.write_bytes((text + ("{not json\n" if folder == "AI2D" else "")).encode()
                        + (b'{"question": "caf\xe9"}\n' if folder == "AI2D" else b""))  # Latin-1 bytes
        meta[key] = {"root": f"MMPR/images/{folder}", "annotation": f"MMPR/annotations/{key}.jsonl",
                     "data_augment": False, "repeat_time": 1, "length": len(lines)}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return make_sources(tmp_path_factory.mktemp("sources"))


def run(root: Path, src: dict, *extra: str, sources=None) -> int:
    """prepare.py on local copies; the fixtures are mostly broken rows, hence the high skip ceiling."""
    sources = sources or list(src)
    local = [f"{s}={src[s]}" for s in sources]
    return prepare.main(["--path", str(root), "--sources", *sources, "--local", *local,
                         "--cache_dir", str(root / ".hf-cache"), "--max_skip_fraction", "0.9", *extra])


def skipped(out: Path, name: str) -> dict:
    """{reason: count} from the source's JSON summary <out>/<name>.jsonl.done."""
    marker = json.loads((out / f"{name}.jsonl.done").read_text())
    return {k: v["count"] for k, v in marker["skipped"]["kinds"].items()}


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_benchmarks_and_meta_source_convert_with_broken_rows_counted(tmp_path, src, capsys):
    assert run(tmp_path, src, sources=BENCHMARKS) == 0
    log = capsys.readouterr().out
    recs = {name: read_records(tmp_path / f"data/{name}.jsonl", required=REQUIRED) for name in BENCHMARKS}
    for name, rs in recs.items():
        for r in rs:  # the contract the inference scripts rely on
            assert list(r)[:8] == ["id", "input", "image_path", "ground_truth", "dataset", "type", "hint", "options"]
            for p in r.get("image_paths", [r["image_path"]]):
                assert not Path(p).is_absolute() and load_image(tmp_path / p).size[0] > 0
            assert p.startswith(f"data/images/{name}/")

    mv = {r["id"]: r for r in recs["mathvista"]}
    assert set(mv) == {"1", "2"}
    assert mv["1"]["ground_truth"] == "B" and mv["1"]["options"] == ["left", "right"]
    assert mv["1"]["type"] == "multi_choice" and mv["1"]["hint"].startswith("Please answer the question")
    assert mv["1"]["input"] == "Which bar is taller?" and mv["1"]["image_path"].endswith("1.png")
    assert (mv["2"]["type"], mv["2"]["answer_type"], mv["2"]["precision"]) == ("free_form", "float", 1.0)
    assert mv["2"]["options"] is None and mv["2"]["image_path"].endswith(".jpg") and mv["2"]["unit"] is None
    assert "[mathvista] wrote 2 records" in log
    assert skipped(tmp_path / "data", "mathvista") == {"missing answer": 1, "missing image": 1,
                                                       "unreadable image bytes": 1}
    assert "mathvista: skipped 3 of 5 records: missing image 1 (e.g. " in log and "parquet, row 3)" in log

    we = recs["wemath"]
    assert [r["id"] for r in we] == ["7@2steps_1", "7@2steps_multi"] and we[0]["key"] == "2steps_1"
    assert we[0]["options"] == ["30°", "45°", "60°", "90°", "No correct answer"] and we[0]["ground_truth"] == "B"
    assert "[wemath] wrote 2 records" in log and skipped(tmp_path / "data", "wemath") == {"missing image": 1}

    mvis = {r["id"]: r for r in recs["mathvision"]}
    assert mvis["1"]["type"] == "free_form" and mvis["1"]["options"] is None and mvis["1"]["ground_truth"] == "4"
    assert mvis["2"]["type"] == "multi_choice" and mvis["2"]["options"][2] == "c" and mvis["2"]["level"] == 1
    assert skipped(tmp_path / "data", "mathvision") == {"image file not found": 1}
    assert "image file not found 1 (e.g. " in log and "test.jsonl:3 (" in log  # a JSONL row: file:line

    assert [(r["id"], r["ground_truth"], r["capability"]) for r in recs["mmvet"]] == [("v1_0", "-1<AND>-5", "ocr,math")]
    assert skipped(tmp_path / "data", "mmvet") == {"missing question": 1}

    star = recs["mmstar"]
    assert [r["ground_truth"] for r in star] == ["A", "B"] and star[0]["options"] is None
    assert star[0]["image_path"].endswith("0.png")  # the GIF was re-encoded as PNG
    assert "Options: A: the ball" in star[0]["input"] and star[0]["category"] == "coarse perception"

    mm = {r["id"]: r for r in recs["mmmu"]}
    assert set(mm) == {"validation_Accounting_1", "validation_Accounting_2"}
    a1, a2 = mm["validation_Accounting_1"], mm["validation_Accounting_2"]
    assert a1["options"] == ["$10,000", "$20,000"] and a1["type"] == "multi_choice" and a1["ground_truth"] == "B"
    assert a1["input"].startswith("<image 1>") and a1["subject"] == "Accounting" and len(a1["image_paths"]) == 1
    assert a2["type"] == "free_form" and a2["options"] is None and len(a2["image_paths"]) == 2
    assert a2["image_path"] == a2["image_paths"][0] and a2["image_paths"][1].endswith("_2.jpg")
    assert skipped(tmp_path / "data", "mmmu") == {"missing image": 1, "unparsable options": 1}


def test_rerun_is_byte_identical_and_never_duplicates_images(tmp_path, src, capsys):
    assert run(tmp_path, src, "--n_per_domain", "3") == 0
    first = snapshot(tmp_path / "data")
    assert run(tmp_path, src, "--n_per_domain", "3") == 0
    assert snapshot(tmp_path / "data") == first
    for name in src:
        recs = read_records(tmp_path / f"data/{name}.jsonl")
        used = {Path(p).name for r in recs for p in r.get("image_paths", [r["image_path"]])}
        assert {p.name for p in (tmp_path / f"data/images/{name}").iterdir()} == used  # no stray or duplicate
    # A smaller sample removes the images only the bigger one used.
    assert run(tmp_path, src, "--n_per_domain", "1", sources=["mmpr"]) == 0
    assert "removed 2 image(s) of an earlier run" in capsys.readouterr().out
    assert len(list((tmp_path / "data/images/mmpr").iterdir())) == 4  # ai2d 1 + geos 1 + CLEVR 2


def test_mmpr_samples_n_per_domain_seeded_and_counts_skips(tmp_path, src, capsys):
    assert run(tmp_path, src, "--n_per_domain", "3", sources=["mmpr"]) == 0
    recs = read_records(tmp_path / "data/mmpr.jsonl", required=REQUIRED)
    by = {}
    for r in recs:
        by.setdefault(r["dataset"], []).append(r)
    assert {k: len(v) for k, v in by.items()} == {"ai2d": 3, "geos": 1, "CLEVR_math": 1}
    assert all(not r["input"].startswith("<image>") and r["ground_truth"] for r in recs)
    clevr = by["CLEVR_math"][0]
    assert len(clevr["image_paths"]) == 2 and clevr["id"] == "CLEVR_math-1"
    for r in recs:
        load_image(tmp_path / r["image_path"])
    err = capsys.readouterr().err
    assert "no correctness_rules annotation for domain chartqa" in err  # absent domains are reported

    # Taking every question: six good distinct ones (the repeated pair is one question), five skips.
    out = tmp_path / "all"
    assert run(tmp_path, src, "--n_per_domain", "100", "--out", str(out), sources=["mmpr"]) == 0
    log = capsys.readouterr().out
    ai2d = [r for r in read_records(out / "mmpr.jsonl") if r["dataset"] == "ai2d"]
    assert len(ai2d) == 6 and len({r["input"] for r in ai2d}) == 6
    assert skipped(out, "mmpr") == {"image file not found": 1, "malformed annotation line": 1, "missing answer": 1,
                                    "unreadable image bytes": 1, "non-UTF-8 bytes": 1}
    assert "skipped 5 of " in log
    assert "per dataset: CLEVR_math 1, ai2d 6, geos 1" in log

    # The sample depends on --seed and only on it.
    ids = lambda p: [r["id"] for r in read_records(p)]  # noqa: E731
    assert run(tmp_path, src, "--n_per_domain", "3", "--seed", "7", "--out", "s7", sources=["mmpr"]) == 0
    assert run(tmp_path, src, "--n_per_domain", "3", "--seed", "7", "--out", "s7b", sources=["mmpr"]) == 0
    assert ids(tmp_path / "s7/mmpr.jsonl") == ids(tmp_path / "s7b/mmpr.jsonl")


def test_output_outside_the_repo_gets_absolute_image_paths(tmp_path, src):
    root, out = tmp_path / "repo", tmp_path / "elsewhere"
    root.mkdir()
    assert run(root, src, "--out", str(out), sources=["mmstar"]) == 0
    for r in read_records(out / "mmstar.jsonl", required=REQUIRED):
        assert Path(r["image_path"]).is_absolute() and load_image(r["image_path"])


def test_hub_ids_splits_and_configs(tmp_path, monkeypatch):
    """Without network: the hub path asks `datasets` for the right id, config and split."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, cache_dir=None):
        calls.append((path, name, split))
        row = {"index": len(calls), "pid": str(len(calls)), "id": f"validation_{name}_1", "question": "q?",
               "answer": "A", "image": hf(img()), "decoded_image": hf(img()), "image_1": hf(img()),
               "options": "['x', 'y']", "choices": ["x", "y"], "question_type": "multi_choice"}
        return datasets.Dataset.from_dict({k: [v] for k, v in row.items()})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert prepare.main(["--path", str(tmp_path), "--sources", "mathvista", "mmstar", "mmmu"]) == 0
    assert calls[:2] == [("AI4Math/MathVista", None, "testmini"), ("Lin-Chen/MMStar", None, "val")]
    assert calls[2:] == [("MMMU/MMMU", s, "validation") for s in mmmu.SUBJECTS] and len(calls) == 32
    assert len(read_records(tmp_path / "data/mmmu.jsonl")) == 30


def test_a_failing_source_is_reported_and_the_others_still_run(tmp_path, src, capsys):
    code = prepare.main(["--path", str(tmp_path), "--sources", "mmstar", "mmvet",
                         "--local", f"mmstar={tmp_path / 'missing.parquet'}", f"mmvet={src['mmvet']}",
                         "--cache_dir", str(tmp_path / ".hf-cache"), "--max_skip_fraction", "0.5"])
    captured = capsys.readouterr()
    assert code == 1 and "[mmstar] FAILED: FileNotFoundError" in captured.err
    assert "[mmvet] wrote 1 records" in captured.out


def test_local_needs_source_names_when_several_sources(tmp_path):
    with pytest.raises(DataError, match="SOURCE=PATH"):
        prepare.main(["--path", str(tmp_path), "--sources", "mmstar", "mmvet", "--local", "/x.parquet"])


def test_writer_accepts_pil_bytes_paths_and_dicts(tmp_path):
    w = SourceWriter(tmp_path / "data/x.jsonl", tmp_path)
    (tmp_path / "pic.jpg").write_bytes(img("JPEG"))
    for i, value in enumerate([Image.new("RGB", (5, 4)), img(), "pic.jpg", hf(None, "pic.jpg"), hf(img())]):
        w.add({"id": "dup", "input": "q", "ground_truth": "a", "dataset": "x", "image": value}, base=tmp_path)
    assert [r["id"] for r in w.records] == ["dup", "dup-2", "dup-3", "dup-4", "dup-5"]
    assert [Path(r["image_path"]).suffix for r in w.records] == [".png", ".png", ".jpg", ".jpg", ".png"]
    assert w.records[2]["image_path"] == "data/images/x/dup-3.jpg"
    assert (tmp_path / w.records[2]["image_path"]).read_bytes() == img("JPEG")  # stored byte for byte
    assert "renamed 4 duplicate id(s)" in w.close()
    # File names never collide, even when one record's id looks like another's numbered image.
    w = SourceWriter(tmp_path / "data/y.jsonl", tmp_path)
    w.add({"id": "a", "input": "q", "ground_truth": "a", "image": [img(), None, img()]})
    w.add({"id": "a_1", "input": "q", "ground_truth": "a", "image": img()})
    assert [Path(p).stem for p in w.records[0]["image_paths"]] == ["a_1", "a_2"]
    assert Path(w.records[1]["image_path"]).stem == "a_1-2"
    for bad, reason in [(None, "missing image"), (b"", "missing image"), (b"junk", "unreadable image bytes"),
                        ("nowhere.png", "image file not found"), (hf(None, None), "missing image")]:
        with pytest.raises(Skip, match=reason):
            encode_image(image_bytes(bad, tmp_path))


def test_wemath_option_string_parsing():
    assert wemath.split_options("A. 1; B. 2.5; C. No correct answer") == ["1", "2.5", "No correct answer"]
    assert wemath.split_options("A:x\nB:y") == ["x", "y"]
    assert wemath.split_options("see the figure") is None
    assert wemath.split_options("B. 1; A. 2") is None


def test_help_lists_the_stage_options():
    out = subprocess.run([sys.executable, str(REPO / "dataset/prepare.py"), "--help"],
                         capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    for flag in ("--sources", "--local", "--n_per_domain", "--out", "--path", "--seed", "mathvista"):
        assert flag in out.stdout


def make_mmmu_pro(d: Path) -> Path:
    """MMMU/MMMU_Pro "standard (4 options)" test rows: two kept single-image questions ending in <image 1>,
    three that the released code's rules skip."""
    n = 5
    opts = "['WWI', 'WWII', 'Korean War', 'Vietnam War']"
    return parquet(d / "mmmu_pro/standard (4 options)/test-00000-of-00001.parquet", {
        "id": ["test_History_1", "test_History_2", "test_Art_1", "test_Art_2", "test_Math_1"],
        "question": ["Which war is depicted in <image 1>",
                     "Compare <image 1> and <image 2>",  # a second image
                     "<image 1> Which style is shown in <image 1>",  # starts with the image
                     "What does <image 1> show?",  # does not end with it
                     "The graph of f is shown. What is f'(0)? <image 1>"],
        "options": [opts, opts, "['Baroque', 'Rococo', 'Gothic', 'Cubism']", "['a', 'b', 'c', 'd']",
                    "['0', '1', '-1', '2']"],
        "explanation": [""] * n,
        "image_1": [hf(img()), hf(img()), hf(img()), hf(img()), hf(img("JPEG"))],
        "image_2": [None, hf(img()), None, None, None],
        **{f"image_{k}": [None] * n for k in range(3, 8)},
        "img_type": ["['Photographs']"] * n, "answer": ["B", "A", "C", "D", "A"],
        "topic_difficulty": ["Medium"] * n, "subject": ["History", "History", "Art", "Art", "Math"],
    }, image_cols=[f"image_{k}" for k in range(1, 8)])


def test_mmmu_pro_follows_the_released_rules_and_feeds_rollouts_and_meta_data(tmp_path, capsys):
    from conftest import load_script
    from dreamprm.backends import Backend
    from dreamprm.cli import parse_args

    src = make_mmmu_pro(tmp_path / "src")
    assert run(tmp_path, {"mmmu_pro": src.parent}) == 0
    log = capsys.readouterr().out
    assert "[mmmu_pro] wrote 2 records" in log
    assert ("left out by the source's rules: question does not end with <image 1> 1, question starts with "
            "<image 1> 1, several images 1") in log
    assert "mmmu_pro: no record skipped" in log  # the rules' selection never counts against --max_skip_fraction
    recs = {r["id"]: r for r in read_records(tmp_path / "data/mmmu_pro.jsonl", required=REQUIRED)}
    assert list(recs) == ["test_History_1", "test_Math_1"]
    h, m = recs["test_History_1"], recs["test_Math_1"]
    assert h["input"] == "Question: Which war is depicted in \nOptions: (A) WWI (B) WWII (C) Korean War (D) Vietnam War"
    assert m["input"] == "Question: The graph of f is shown. What is f'(0)? \nOptions: (A) 0 (B) 1 (C) -1 (D) 2"
    assert (h["ground_truth"], h["type"], h["dataset"], h["subject"]) == ("B", "multi_choice", "MMMU-Pro", "History")
    assert h["options"] == ["WWI", "WWII", "Korean War", "Vietnam War"] and "image_paths" not in h
    assert h["image_path"] == "data/images/mmmu_pro/test_History_1.png" and m["image_path"].endswith(".jpg")
    assert (tmp_path / h["image_path"]).read_bytes() == img()  # saved byte for byte

    class AlwaysB(Backend):
        def __init__(self):
            self.prompts = []

        def generate(self, requests, n, temperature, max_new_tokens):
            self.prompts += [r.text for r in requests]
            return [["Step 1: Look at the picture.\nStep 2: Decide.\n\nFinal answer: B"] * n for _ in requests]

    mod = load_script("inference/mmmu_pro.py")
    cfg = parse_args(mod.MMMUProArgs, ["--path", str(tmp_path), "--policy", "unused", "--judge", "none",
                                       "--gpu", "cpu"])
    backend = AlwaysB()
    assert cfg.n == 4 and mod.run(cfg, mod.make_prompt, mod.make_input, backend=backend)["records"] == 8
    assert h["input"] in backend.prompts[0] and backend.prompts[0].count("(A) WWI") == 1  # the original's text
    rolled = read_records(tmp_path / "runs/rollouts/mmmu_pro.jsonl")
    assert [(r["id"], r["true_false"], r["judged_by"]) for r in rolled[::4]] == [
        ("test_History_1", True, "rule"), ("test_Math_1", False, "rule")]
    assert rolled[0]["input"] == h["input"]
    # meta_data.py reads these rollouts by default: one always-right and one always-wrong question.
    meta, stats = load_script("inference/meta_data.py").main(["--path", str(tmp_path)])
    assert [(r["id"], r["true_false"]) for r in meta] in ([("test_History_1", True), ("test_Math_1", False)],
                                                           [("test_Math_1", False), ("test_History_1", True)])
    assert all(r["input"].startswith("Question: ") and "\n\nStep 1:" in r["input"] for r in meta)


def test_mmmu_pro_and_whyu_mmvet_hub_ids(tmp_path, monkeypatch):
    """Without network: MMMU-Pro's config and split, and --mmvet_repo whyu/mm-vet (its id column is `id`)."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, cache_dir=None):
        calls.append((path, name, split))
        row = {"id": "v1_7" if "vet" in path else "test_Art_3", "question": "Who painted <image 1>",
               "options": "['x', 'y']", "answer": "A", "image_1": hf(img()), "image_2": None, "image": hf(img())}
        return datasets.Dataset.from_dict({k: [v] for k, v in row.items()})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert prepare.main(["--path", str(tmp_path), "--sources", "mmmu_pro", "mmvet", "--mmvet_repo", "whyu/mm-vet"]) == 0
    assert calls == [("MMMU/MMMU_Pro", "standard (4 options)", "test"), ("whyu/mm-vet", None, "test")]
    assert read_records(tmp_path / "data/mmmu_pro.jsonl")[0]["input"] == "Question: Who painted \nOptions: (A) x (B) y"
    assert read_records(tmp_path / "data/mmvet.jsonl")[0]["id"] == "v1_7"


# --- issue 12: bad local files end in counted, located skips or one line naming the file -----------------

def mathvision_copy(d: Path, bad) -> Path:
    """A local MathVision copy (test.jsonl + images/): four good rows and `bad` (a row, or raw bytes) on line 3."""
    (d / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(4):
        (d / "images" / f"{i}.png").write_bytes(img(color=(i * 50, 0, 0)))
        rows.append({"id": str(i), "question": f"How many dots? ({i})", "options": [], "image": f"images/{i}.png",
                     "answer": str(i), "solution": None, "level": 1, "subject": "counting"})
    lines = [json.dumps(r).encode() for r in rows]
    if isinstance(bad, dict):
        bad = json.dumps({**rows[0], "id": "bad", **bad}).encode()
    (d / "test.jsonl").write_bytes(b"\n".join(lines[:2] + [bad] + lines[2:]) + b"\n")
    return d


BAD_ROWS = {
    "malformed JSON": b'{"id": "bad", "question": ',
    "non-UTF-8 bytes": b'{"id": "bad", "question": "\xff dots?", "answer": "1", "image": "images/0.png"}',
    "not a JSON object": b'["a", "list"]',
    "missing question": {"question": None},
    "missing answer": {"answer": ""},
    "wrong type": {"question": {"text": "a dict"}},
    "missing answer NaN": b'{"id": "bad", "question": "q", "answer": NaN, "image": "images/0.png"}',
    "image file not found": {"image": "images/gone.png"},
    "zero-byte image": {"image": "images/empty.png"},
    "unreadable image bytes": {"image": "images/broken.png"},
    "image too large": {"image": "images/big.png"},
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_a_bad_local_row_is_a_counted_located_skip(tmp_path, kind):
    d = mathvision_copy(tmp_path / "mv", BAD_ROWS[kind])
    (d / "images/empty.png").write_bytes(b"")
    (d / "images/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (d / "images/big.png").write_bytes(img(size=(200, 100)))  # 20,000 pixels > --max_image_pixels 10,000
    assert run(tmp_path, {"mathvision": d}, "--max_image_pixels", "10000", "--max_skip_fraction", "0.25") == 0
    recs = read_records(tmp_path / "data/mathvision.jsonl", required=REQUIRED)
    assert [r["id"] for r in recs] == ["0", "1", "2", "3"]  # every good row kept
    marker = json.loads((tmp_path / "data/mathvision.jsonl.done").read_text())
    kind = kind.removesuffix(" NaN")  # NaN is pandas' "no value": a missing answer
    assert marker["records"] == 4 and list(marker["skipped"]["kinds"]) == [kind]
    assert marker["skipped"]["kinds"][kind]["first"][0].startswith(f"{d / 'test.jsonl'}:3")


@pytest.mark.parametrize("case, message", [
    ("empty file", r"test\.jsonl: empty file"),
    ("malformed JSON array", r"test\.json:2: malformed JSON"),
    ("missing file", "gone.jsonl: no such file or folder"),
    ("flood", r"skipped 2 of 4 records: .*over the ceiling --max_skip_fraction 0\.1"),
])
def test_a_bad_local_file_fails_its_source_in_one_line(tmp_path, case, message, capsys):
    d = tmp_path / "mv"
    d.mkdir()
    local = d
    if case == "empty file":
        (d / "test.jsonl").write_text("\n")
    elif case == "malformed JSON array":
        (d / "test.json").write_text('[{"id": "1", "question": "q"},\n {"id": 2,,}]')
    elif case == "missing file":
        local = d / "gone.jsonl"
    else:
        (d / "images").mkdir()
        (d / "images/0.png").write_bytes(img())
        good = {"question": "q", "answer": "1", "image": "images/0.png"}
        (d / "test.jsonl").write_text("".join(json.dumps(dict(good, id=str(i))) + "\n" for i in range(2)) + "{\n[]\n")
    code = prepare.main(["--path", str(tmp_path), "--sources", "mathvision", "--local", f"mathvision={local}",
                         "--cache_dir", str(tmp_path / ".hf-cache")])
    err = capsys.readouterr().err
    failed = [ln for ln in err.splitlines() if ln.startswith("[mathvision] FAILED")]
    assert code == 1 and len(failed) == 1 and "Traceback" not in err
    assert re.search(message, failed[0]), failed[0]
    assert not (tmp_path / "data/mathvision.jsonl").exists()


def test_a_source_being_written_by_another_process_is_refused(tmp_path, src, capsys):
    out = tmp_path / "data" / "mmstar.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                               "from dreamprm.io import lock_output; lock_output(sys.argv[2]); print('held', flush=True); "
                               "time.sleep(60)", str(REPO), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run(tmp_path, src, sources=["mmstar"]) == 1
        err = capsys.readouterr().err
        assert f"being written by another process (pid {holder.pid}" in err and not out.exists()
    finally:
        holder.kill()
        holder.wait()
