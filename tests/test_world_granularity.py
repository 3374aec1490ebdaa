"""The granularity page (`dreamprm/miniworld/granularity.py`) on a hand-made run directory: numbers by hand."""
import json

import pytest

from dreamprm.miniworld import granularity as wg
from dreamprm.io import DataError


def write_run(root, weights_by_question):
    (root / "world").mkdir(parents=True)
    quality = {"good": 1.0, "fair": 0.7, "poor": 0.4}
    (root / "world/world.json").write_text(json.dumps({"domains": [
        {"name": d, "role": "train", "quality": q} for d, q in quality.items()] + [
        {"name": "meta", "role": "meta", "quality": 1.0}]}))
    questions = {f"{d}-{i}": {"corrupted": i < round((1 - q) * 10)} for d, q in quality.items() for i in range(10)}
    (root / "world/policy.json").write_text(json.dumps({"questions": questions}))
    for name, w in (("domain", None), ("instance_table", weights_by_question)):
        (root / name).mkdir()
        if w is None:
            summary = {"weights": {"good": 1.3, "fair": 1.0, "poor": 0.7}}
        else:
            rows = [{"instance": f"{q}-0", "domain": q.split("-")[0], "question": q, "weight": x} for q, x in w.items()]
            (root / name / "instance_weights.json").write_text(json.dumps(rows))
            means = {d: sum(r["weight"] for r in rows if r["domain"] == d) / 10 for d in quality}
            summary = {"weights": means, "instance_weights_by_domain": {
                d: {"mean": m, "std": 0.1, "n": 10} for d, m in means.items()}}
        (root / name / "summary.json").write_text(json.dumps(summary))
    return questions


def test_auroc_and_spearman_by_hand(tmp_path):
    questions = write_run(tmp_path / "run", {})
    # every clean question outweighs every corrupted one except one pair: the poor domain's first clean question
    weights = {q: (0.2 if v["corrupted"] else 1.0) for q, v in questions.items()}
    weights["poor-6"] = 0.1  # a clean question below every corrupted one (0.2): 13 of its 13 pairs are lost
    for d in ("domain", "instance_table"):
        (tmp_path / "run" / d / "summary.json").unlink()
    write_run(tmp_path / "run2", weights)
    res = wg.granularity(tmp_path / "run2")
    assert res["runs"]["domain"]["spearman"] == pytest.approx(1.0)
    a = res["runs"]["instance_table"]["corrupted_vs_clean"]
    n_bad = sum(v["corrupted"] for v in questions.values())
    n_good = len(questions) - n_bad
    assert (a["n"], a["n_corrupted"]) == (30, n_bad)
    assert a["auroc"] == pytest.approx(1 - n_bad / (n_good * n_bad))
    assert a["lo"] <= a["auroc"] <= a["hi"] <= 1.0
    assert res["runs"]["instance_table"]["spearman"] == pytest.approx(1.0)  # poorer domains, more corrupted
    page = wg.page(res, tmp_path / "run2")
    assert "| good | 1.00 | 1.300 | 1.000 ± 0.100 |" in page and "AUROC" in page


def test_an_instance_of_an_unknown_question_is_an_error(tmp_path):
    write_run(tmp_path / "run", {"elsewhere-1": 1.0})
    with pytest.raises(DataError, match="elsewhere-1"):
        wg.granularity(tmp_path / "run")
    with pytest.raises(DataError, match="no run"):
        (tmp_path / "empty/world").mkdir(parents=True)
        for f in ("world.json", "policy.json"):
            (tmp_path / "empty/world" / f).write_text((tmp_path / "run/world" / f).read_text())
        wg.granularity(tmp_path / "empty")
