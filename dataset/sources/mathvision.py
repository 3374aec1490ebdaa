"""MathVision test (MathLLMs/MathVision): 3,040 competition problems, multiple choice or free form.

Card schema: id, question, options (list; empty for free form), image (path string), decoded_image
(image), answer, solution, level, subject. Questions contain an `<image1>` placeholder; it is kept.
The upstream JSONL + images folder works as a local copy too.
"""
from dreamprm.data import option_letter, read_rows, text

NAME, HUB_ID, SPLIT = "mathvision", "MathLLMs/MathVision", "test"


def rows(local, cfg):
    return read_rows(HUB_ID, SPLIT, local=local, cache_dir=cfg.cache_dir)


def convert(row: dict) -> dict:
    options = [text(o) for o in row.get("options") or []] or None
    return {
        "id": text(row.get("id")),
        "input": row.get("question"),
        "ground_truth": option_letter(text(row.get("answer")), options),
        "dataset": "MathVision",
        "type": "multi_choice" if options else "free_form",
        "hint": "",
        "options": options,
        "level": row.get("level"),
        "subject": row.get("subject"),
        # The hub table holds the picture in decoded_image; a local JSON only has the path in image.
        "image": row["decoded_image"] if "decoded_image" in row else row.get("image"),
    }
