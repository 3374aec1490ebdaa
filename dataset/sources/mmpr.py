"""The 15 training domains: OpenGVLab/MMPR's `*_extracted_pairs_vqa_correctness_rules` annotation files.

MMPR is not a `datasets` table but a folder: meta.json maps an annotation name to {"root": image folder,
"annotation": JSONL file}, both relative to the folder that holds MMPR/ (e.g. "MMPR/images/ScienceQA").
Each JSONL line is a preference pair {"image", "question", "chosen", "rejected", "answer_gt", ...}; the
same question appears in several pairs, so questions are deduplicated on (image, question) before
sampling. Per domain the questions are shuffled with a seed derived from --seed and the domain name, and
prepare.py takes the first --n_per_domain that convert cleanly, so a skipped row is replaced by the next one.
"""
import json
import random
import sys
from pathlib import Path

from dreamprm.data import Skip, text
from dreamprm.io import DataError
from dreamprm.domains import MMPR_DOMAINS

NAME, HUB_ID, SPLIT = "mmpr", "OpenGVLab/MMPR", "train"
PER_DOMAIN = True  # prepare.py caps the records of each domain at --n_per_domain

# The annotation names the paper's released code lists; other MMPR versions are matched by prefix.
ANNOTATIONS = {
    "ai2d": "ai2d_train_12k_en_20240410_extracted_pairs_vqa_correctness_rules",
    "chartqa": "chartqa_trainval_30k_w_csv_en_20240402_extracted_pairs_vqa_correctness_rules",
    "m3cot": "m3cot_train_extracted_pairs_vqa_correctness_rules",
    "scienceqa": "scienceqa_multi_choice_en_20240402_extracted_pairs_vqa_correctness_rules",
    "mapqa": "mapqa_suv_en_20240402_extracted_pairs_vqa_correctness_rules",
    "geo170k": "geo170k_extracted_full_pairs_vqa_correctness_rules",
    "CLEVR_math": "CLEVR_math_en_20240402_extracted_pairs_vqa_correctness_rules",
    "geometry3k": "geometry3k_en_20240402_extracted_open_ended_only_pairs_vqa_correctness_rules",
    "figureqa": "figureqa_en_20240402_extracted_pairs_vqa_correctness_rules",
    "infographics": "infographics_20240403_qa_20240407_v2_extracted_pairs_vqa_correctness_rules",
    "unigeo_calc": "unigeo_calc_en_20240402_extracted_open_ended_only_pairs_vqa_correctness_rules",
    "geomverse": "geomverse_extracted_pairs_vqa_correctness_rules",
    "iconqa": "iconqa_train_extracted_pairs_vqa_correctness_rules",
    "dvqa": "dvqa_en_20240402_extracted_int_only_pairs_vqa_correctness_rules",
    "geos": "geos_en_20240402_extracted_pairs_vqa_correctness_rules",
}
assert set(ANNOTATIONS) == set(MMPR_DOMAINS)


def rows(local, cfg):
    folder = Path(local[0]) if local else download(cfg)
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{meta_file}: MMPR's meta.json is needed to find annotations and image folders")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{meta_file}: not a readable JSON file ({e})") from None
    for domain in MMPR_DOMAINS:
        key = _annotation_key(meta, domain)
        ann = key and _find(folder, meta[key].get("annotation", ""), "annotations/" + key + ".jsonl")
        if not ann or not ann.is_file():
            print(f"mmpr: no correctness_rules annotation for domain {domain}; it gets no records", file=sys.stderr)
            continue
        root = meta[key].get("root", "")
        image_root = _find(folder, root, "images/" + Path(root).name)  # some meta.json hold absolute paths
        questions = _questions(ann)
        random.Random(f"{cfg.seed}-{domain}").shuffle(questions)
        for q in questions:
            yield {**q, "domain": domain, "_base": str(image_root) if image_root else None}


def _annotation_key(meta: dict, domain: str) -> str | None:
    if ANNOTATIONS[domain] in meta:
        return ANNOTATIONS[domain]
    hits = [k for k in meta if k.startswith(domain + "_") and k.endswith("_pairs_vqa_correctness_rules")]
    return hits[0] if len(hits) == 1 else None


def _find(folder: Path, rel: str, *fallbacks: str) -> Path | None:
    """meta.json paths start at the folder holding MMPR/ ("MMPR/images/X"); accept them from inside it too."""
    tries = []
    if rel:
        p = Path(rel)
        tries += [p] if p.is_absolute() else [folder.parent / p, folder / p]
        if not p.is_absolute() and len(p.parts) > 1:
            tries.append(folder / Path(*p.parts[1:]))
    tries += [folder / f for f in fallbacks]
    return next((t for t in tries if t.exists()), None)


def _questions(ann: Path) -> list[dict]:
    """Distinct (image, question) pairs in file order, each with the line it first appears on. A line that is
    not UTF-8, not JSON or not an object becomes a row that convert() counts as a skip."""
    seen, out = set(), []
    for lineno, raw in enumerate(ann.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            r = json.loads(raw.decode("utf-8"))
            if not isinstance(r, dict):
                raise ValueError
        except UnicodeDecodeError:
            out.append({"_line": lineno, "_bad": ("non-UTF-8 bytes", f"{ann}:{lineno}")})
            continue
        except ValueError:  # JSONDecodeError is one
            out.append({"_line": lineno, "_bad": ("malformed annotation line", f"{ann}:{lineno}")})
            continue
        key = (json.dumps(r.get("image")), text(r.get("question")))
        if key not in seen:
            seen.add(key)
            out.append({"_line": lineno, "image": r.get("image"), "question": r.get("question"),
                        "answer_gt": r.get("answer_gt")})
    return out


def convert(row: dict) -> dict:
    if row.get("_bad"):
        raise Skip(*row["_bad"])
    question = text(row.get("question"))
    if question.startswith("<image>"):  # the chat template inserts the image itself
        question = question[len("<image>"):].strip()
    return {
        "id": f"{row['domain']}-{row['_line']}",
        "input": question,
        "ground_truth": row.get("answer_gt"),
        "dataset": row["domain"],
        "type": None,  # the annotation files carry no question type
        "hint": "",
        "options": None,  # options, when any, are written inside the question
        "image": row.get("image"),
    }


def download(cfg) -> Path:
    """Fetch meta.json + annotations.zip + images.zip once and unpack them under <out>/raw/mmpr."""
    import shutil
    import zipfile

    from huggingface_hub import snapshot_download

    snap = Path(snapshot_download(cfg.mmpr_repo, repo_type="dataset", cache_dir=cfg.cache_dir,
                                  allow_patterns=["meta.json", "annotations.zip", "images.zip"]))
    dest = cfg.resolve(cfg.out) / "raw" / NAME
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(snap / "meta.json", dest / "meta.json")
    for z in ("annotations.zip", "images.zip"):
        done = dest / f".{z}.unpacked"
        if not done.exists():
            print(f"mmpr: unpacking {z} into {dest}", file=sys.stderr)
            with zipfile.ZipFile(snap / z) as f:
                f.extractall(dest)
            done.touch()
    return dest
