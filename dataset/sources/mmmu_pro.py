"""MMMU-Pro (MMMU/MMMU_Pro, config "standard (4 options)", split test): the default meta set source, as in the
paper's released code. 1,730 questions on the card; only single-image questions whose text ends with the
image are kept.

Card schema: id ("test_<Subject>_<n>"), question, options (a python-list *string*), explanation,
image_1 .. image_7, img_type, answer (a letter), topic_difficulty, subject.

The released code's rules: skip a question with a second image or whose text starts with `<image 1>`, keep
only text ending with `<image 1>` (the placeholder is cut off, nothing else is stripped) and write
`Question: {q}\\nOptions: (A) {a} (B) {b} ...` as the input. That text is the record's `input`, so the rollout
script shows the policy exactly the original's words; `options` is kept as well so the answer check knows the
question is multiple choice and can map an option's text to its letter.
"""
import ast

from dreamprm.data import Skip, read_rows, text

NAME, HUB_ID, SPLIT, CONFIG = "mmmu_pro", "MMMU/MMMU_Pro", "test", "standard (4 options)"
IMAGE = "<image 1>"


def rows(local, cfg):
    return read_rows(HUB_ID, SPLIT, configs=(CONFIG,), local=local, cache_dir=cfg.cache_dir)


def question_input(question: str, options: list[str]) -> str:
    letters = " ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))
    return f"Question: {question}\nOptions: {letters}"


def convert(row: dict) -> dict:
    question = row.get("question") or ""  # the rules test the raw text, as the original does
    if row.get("image_2") is not None:
        raise Skip("several images")
    if question.startswith(IMAGE):
        raise Skip("question starts with <image 1>")
    if not question.endswith(IMAGE):
        raise Skip("question does not end with <image 1>")
    try:
        options = ast.literal_eval(text(row.get("options")) or "[]")  # a string, never eval'd as code
    except (ValueError, SyntaxError):
        options = None
    if not isinstance(options, list):
        raise Skip("unparsable options")
    return {
        "id": text(row.get("id")),
        "input": question_input(question[: -len(IMAGE)], [str(o) for o in options]),
        "ground_truth": row.get("answer"),
        "dataset": "MMMU-Pro",
        "type": "multi_choice",
        "hint": "",
        "options": [text(o) for o in options] or None,
        "subject": text(row.get("subject")),
        "image": row.get("image_1"),
    }
