"""MMMU validation (MMMU/MMMU): the meta set's source; 30 subject configs x 30 questions.

Card schema: id ("validation_<Subject>_<n>"), question, options (a python-list *string*, "[]" for open
questions), explanation, image_1 .. image_7, img_type, answer (a letter for multiple choice), topic_difficulty,
question_type ("multiple-choice" / "open"), subfield. Questions refer to images as `<image 1>`...; the
placeholders are kept, image_path is the first image and image_paths lists all of them in order.
"""
import ast

from dreamprm.data import Skip, read_rows, text

NAME, HUB_ID, SPLIT = "mmmu", "MMMU/MMMU", "validation"
SUBJECTS = (
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory", "Basic_Medical_Science",
    "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science", "Design", "Diagnostics_and_Laboratory_Medicine",
    "Economics", "Electronics", "Energy_and_Power", "Finance", "Geography", "History", "Literature", "Manage",
    "Marketing", "Materials", "Math", "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology",
    "Public_Health", "Sociology",
)


def rows(local, cfg):
    return read_rows(HUB_ID, SPLIT, configs=SUBJECTS, local=local, cache_dir=cfg.cache_dir)


def convert(row: dict) -> dict:
    try:
        options = ast.literal_eval(text(row.get("options")) or "[]")  # a string, never eval'd as code
    except (ValueError, SyntaxError):
        raise Skip("unparsable options") from None
    options = [text(o) for o in options] or None
    rid = text(row.get("id"))
    return {
        "id": rid,
        "input": row.get("question"),
        "ground_truth": row.get("answer"),
        "dataset": "MMMU",
        "type": "multi_choice" if options else "free_form",
        "hint": "",
        "options": options,
        "subject": rid.split("_", 1)[1].rsplit("_", 1)[0] if rid.count("_") >= 2 else "",
        "subfield": row.get("subfield"),
        "image": [row.get(f"image_{k}") for k in range(1, 8)],
    }
