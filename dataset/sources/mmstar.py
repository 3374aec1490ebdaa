"""MMStar (Lin-Chen/MMStar, config and split "val"): 1,500 vision-indispensable multiple-choice questions.

Card schema: index, question, image, answer (a letter), category, l2_category, meta_info. The options
are written inside the question ("Options: A: ..., B: ..."); splitting them on commas would break options
that contain commas, so `options` stays null and the question keeps them, as the authors prompt it.
"""
from dreamprm.data import read_rows, text

NAME, HUB_ID, SPLIT = "mmstar", "Lin-Chen/MMStar", "val"


def rows(local, cfg):
    return read_rows(HUB_ID, SPLIT, local=local, cache_dir=cfg.cache_dir)


def convert(row: dict) -> dict:
    return {
        "id": text(row.get("index")),
        "input": row.get("question"),
        "ground_truth": row.get("answer"),
        "dataset": "MMStar",
        "type": "multi_choice",
        "hint": "",
        "options": None,
        "category": row.get("category"),
        "l2_category": row.get("l2_category"),
        "image": row.get("image"),
    }
