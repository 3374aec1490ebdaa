"""MM-Vet v1 (lmms-lab/MMVet, split test): 218 open-ended questions graded by an LLM; answers may hold
several acceptable parts joined by <AND> / <OR>.

lmms-lab schema (as lmms-eval reads it): question_id, image, question, answer, capability (comma list).
`--mmvet_repo whyu/mm-vet` reads the copy the paper's code used (split test; its question id column is `id`,
the key the official grader's results file uses). The original mm-vet.json (keyed by id, with "imagename" and
a capability list) + images folder works too. The record id is the source's question id, which the official
grader's results file is keyed by ("v1_0" ...; BoN/export_mmvet.py also maps a bare number n to "v1_n").
"""
from dreamprm.data import read_rows, text

NAME, HUB_ID, SPLIT = "mmvet", "lmms-lab/MMVet", "test"


def rows(local, cfg):
    return read_rows(getattr(cfg, "mmvet_repo", HUB_ID), SPLIT, local=local, cache_dir=cfg.cache_dir)


def convert(row: dict) -> dict:
    cap = row.get("capability")
    return {
        "id": text(row.get("question_id") or row.get("id") or row.get("_key")),
        "input": row.get("question"),
        "ground_truth": row.get("answer"),
        "dataset": "MMVet",
        "type": "free_form",
        "hint": "",
        "options": None,
        "capability": ",".join(cap) if isinstance(cap, list) else text(cap),
        "image": row.get("image") or row.get("imagename"),
    }
