"""MM-Vet v1 (lmms-lab/MMVet, split test): 218 open-ended questions graded by an LLM; answers may hold
several acceptable parts joined by <AND> / <OR>.

lmms-lab schema (as lmms-eval reads it): question_id, image, question, answer, capability (comma list).
The original mm-vet.json (keyed by id, with "imagename" and a capability list) + images folder works too.
"""
from dreamprm.data import read_rows, text

NAME, HUB_ID, SPLIT = "mmvet", "lmms-lab/MMVet", "test"


def rows(local, cfg):
    return read_rows(HUB_ID, SPLIT, local=local, cache_dir=cfg.cache_dir)


def convert(row: dict) -> dict:
    cap = row.get("capability")
    return {
        "id": text(row.get("question_id") or row.get("_key")),
        "input": row.get("question"),
        "ground_truth": row.get("answer"),
        "dataset": "MMVet",
        "type": "free_form",
        "hint": "",
        "options": None,
        "capability": ",".join(cap) if isinstance(cap, list) else text(cap),
        "image": row.get("image") or row.get("imagename"),
    }
