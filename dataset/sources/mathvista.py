"""MathVista testmini (AI4Math/MathVista): 1,000 questions, multiple choice and free form.

Card schema: pid, question, image (path string), decoded_image (image), choices (list or null), unit,
precision (float or null), answer (for multiple choice the text of the right choice), question_type
("multi_choice" / "free_form"), answer_type, metadata, query (hint + question + choices, as the authors
prompt it). A local JSON with "image" paths and an image folder works too.
"""
import re

from dreamprm.data import option_letter, read_rows, text

NAME, HUB_ID, SPLIT = "mathvista", "AI4Math/MathVista", "testmini"
_HINT = re.compile(r"^\s*Hint:\s*(.*?)\s*\nQuestion:", re.S)


def rows(local, cfg):
    return read_rows(HUB_ID, SPLIT, local=local, cache_dir=cfg.cache_dir)


def convert(row: dict) -> dict:
    options = [text(c) for c in row.get("choices") or []] or None
    hint = _HINT.match(row.get("query") or "")
    return {
        "id": text(row.get("pid") or row.get("_key")),
        "input": row.get("question"),
        # The rule checker and the judge compare letters for multiple choice, so store the letter.
        "ground_truth": option_letter(text(row.get("answer")), options),
        "dataset": "MathVista",
        "type": row.get("question_type") or ("multi_choice" if options else "free_form"),
        "hint": hint.group(1) if hint else "",
        "options": options,
        "answer_type": row.get("answer_type"),
        "precision": row.get("precision"),  # decimals the float answers are graded at
        "unit": text(row.get("unit")) or None,
        # The hub table holds the picture in decoded_image; a local JSON only has the path in image.
        "image": row["decoded_image"] if "decoded_image" in row else row.get("image"),
    }
