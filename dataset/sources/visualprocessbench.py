"""VisualProcessBench (OpenGVLab/VisualProcessBench, split test): human step labels for step-level PRM evaluation
(BoN/step_eval.py), not a training or best-of-N source. The card: 2,866 solutions, 26,950 labelled steps.

Hub files: test.jsonl (9.5 MB, the card's only `datasets` config, split test) and images.zip (501 MB). One line
per solution: image (a list of image paths), question, answer, response {"steps": [text, ...],
"process_correctness": [1 | 0 | -1, ...]} (correct / neutral / incorrect, one per step), policy_model,
data_source (MMMU, MathVision, MathVerse, DynaMath, WeMath). There is no id field.

Without --local, test.jsonl and images.zip are downloaded with huggingface_hub and images.zip is unpacked once
into <out>/raw/visualprocessbench/. --local takes that test.jsonl (or a folder holding it) with an images/
folder beside it, or images.zip, which is unpacked the same way. test.jsonl is read line by line with the
pipeline's located reader: a broken line is a counted skip with its file:line, never a failed load.

A record: id "<data_source>-<line of test.jsonl>", input = question, ground_truth = answer, dataset =
data_source, steps and labels = response's steps and process_correctness, policy_model; image_path is the
first image, image_paths all of them (SourceWriter saves every one). The PRM sees the first image only; the
step evaluation counts the solutions with more than one (`multi_image_solutions` in its metrics).
"""
import ast
import json
import sys
from pathlib import Path

from dreamprm.data import Skip, read_rows, text

NAME, HUB_ID, SPLIT = "visualprocessbench", "OpenGVLab/VisualProcessBench", "test"
FILES = ("test.jsonl", "images.zip")
LABELS = (1, 0, -1)


def rows(local, cfg):
    jsonl, base = _local(local, cfg) if local else download(cfg)
    for row in read_rows(HUB_ID, SPLIT, local=[jsonl]):
        yield {**row, "_base": str(base)}  # image paths are relative to the folder the images were unpacked in


def _local(local, cfg) -> tuple[Path, Path]:
    p = Path(local[0])
    jsonl = p / "test.jsonl" if p.is_dir() else p
    if not jsonl.is_file():
        raise FileNotFoundError(f"{jsonl}: VisualProcessBench's test.jsonl not found")
    folder = jsonl.parent
    if not (folder / "images").is_dir() and (folder / "images.zip").is_file():
        return jsonl, _unpack(folder / "images.zip", cfg)
    return jsonl, folder


def download(cfg) -> tuple[Path, Path]:
    """Fetch test.jsonl and images.zip (once, into the HF cache) and unpack the images under <out>/raw."""
    from huggingface_hub import snapshot_download

    snap = Path(snapshot_download(HUB_ID, repo_type="dataset", cache_dir=cfg.cache_dir, allow_patterns=list(FILES)))
    return snap / "test.jsonl", _unpack(snap / "images.zip", cfg)


def _unpack(archive: Path, cfg) -> Path:
    import zipfile

    dest = cfg.resolve(cfg.out) / "raw" / NAME
    done = dest / ".images.zip.unpacked"
    if not done.exists():  # a killed unpack leaves no marker, so the next run unpacks again
        print(f"{NAME}: unpacking {archive} into {dest}", file=sys.stderr)
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
        done.touch()
    return dest


def _parsed(value, what: str):
    """A field that is JSON in the file, or a string holding JSON / a Python literal (the card's YAML calls
    `response` and `image` strings)."""
    if not isinstance(value, str):
        return value
    s = value.strip()
    if what == "image" and not s.startswith("["):
        return [s] if s else []
    for parse in (json.loads, ast.literal_eval):  # literal_eval never runs code
        try:
            return parse(s)
        except (ValueError, SyntaxError):
            continue
    raise Skip(f"malformed {what}", s[:60])


def convert(row: dict) -> dict:
    response = _parsed(row.get("response"), "response")
    if not isinstance(response, dict):
        raise Skip("malformed response", f"not an object: {str(response)[:60]}")
    steps, labels = response.get("steps"), response.get("process_correctness")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise Skip("no steps", f"response.steps: {str(steps)[:60]}")
    if not isinstance(labels, list) or any(isinstance(y, bool) or y not in LABELS for y in labels):
        raise Skip("bad label", f"process_correctness must hold 1, 0 or -1: {str(labels)[:60]}")
    if len(labels) != len(steps):
        raise Skip("steps and labels differ in number", f"{len(steps)} steps, {len(labels)} labels")
    source = text(row.get("data_source"))
    if not source:
        raise Skip("missing data_source")
    images = _parsed(row.get("image"), "image")
    line = str(row.get("_where", "")).rsplit(":", 1)[-1]
    return {
        "id": f"{source}-{line}",
        "input": row.get("question"),
        "ground_truth": row.get("answer"),
        "dataset": source,
        "type": None,  # the file says nothing of the question type
        "hint": "",
        "options": None,  # options, when any, are written inside the question
        "steps": steps,
        "labels": [int(y) for y in labels],
        "policy_model": text(row.get("policy_model")) or None,
        "image": images if isinstance(images, list) else [images],
    }
