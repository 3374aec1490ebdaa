"""The paired bootstrap (dreamprm/stats.py) and the BoN correctness readers."""
import json

import numpy as np
import pytest

from dreamprm.io import DataError
from dreamprm.stats import (bon_correctness, holds, paired_bon, paired_bootstrap, paired_bootstrap_metric, pooled,
                            random_correctness)


def test_identical_systems_give_zero():
    a = np.random.default_rng(1).integers(0, 2, 50)
    ci = paired_bootstrap(a, a.copy(), n_boot=2000, scale=100)
    assert ci["diff"] == ci["lo"] == ci["hi"] == 0.0
    assert not holds(ci)
    assert ci["n"] == 50 and ci["n_boot"] == 2000


def test_right_where_the_other_is_wrong_holds():
    a = np.array([1, 0] * 20)
    ci = paired_bootstrap(a, 1 - a, n_boot=2000, scale=100)
    assert ci["diff"] == 0  # same accuracy overall, yet every question differs: no claim either way
    assert not holds(ci) and ci["lo"] < 0 < ci["hi"]
    a = np.array([1] * 12 + [0] * 28)  # A right on 12 questions B gets wrong, equal elsewhere
    b = np.zeros(40)
    ci = paired_bootstrap(a, b, n_boot=2000, scale=100)
    assert ci["diff"] == pytest.approx(30.0) and holds(ci) and ci["lo"] > 0
    assert not holds(paired_bootstrap(b, a, n_boot=2000))


def test_half_width_matches_the_normal_approximation():
    rng = np.random.default_rng(7)
    n = 400
    a, b = rng.random(n) < 0.6, rng.random(n) < 0.5  # independent systems: differences in {-1, 0, 1}
    d = a.astype(float) - b
    ci = paired_bootstrap(a, b, n_boot=10000, seed=3)
    normal = 1.96 * d.std(ddof=1) / np.sqrt(n)
    assert (ci["hi"] - ci["lo"]) / 2 == pytest.approx(normal, rel=0.15)
    assert ci["lo"] < ci["diff"] < ci["hi"]
    assert ci["diff"] == pytest.approx(d.mean())


def test_seeded_and_chunked(monkeypatch):
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 2, 30), rng.integers(0, 2, 30)
    one = paired_bootstrap(a, b, n_boot=3000, seed=5)
    assert one == paired_bootstrap(a, b, n_boot=3000, seed=5)
    assert one != paired_bootstrap(a, b, n_boot=3000, seed=6)
    import dreamprm.stats as st

    monkeypatch.setattr(st, "CHUNK", 30 * 7)  # 7 resamples per chunk, the last chunk short
    chunked = paired_bootstrap(a, b, n_boot=3000, seed=5)
    assert chunked["n_boot"] == 3000 and chunked["lo"] <= chunked["diff"] <= chunked["hi"]


def test_metric_version_with_the_mean_equals_paired_bootstrap():
    rng = np.random.default_rng(4)
    a, b = rng.random(60), rng.random(60)
    plain = paired_bootstrap(a, b, n_boot=2000, seed=9, scale=100)
    metric = paired_bootstrap_metric(60, lambda i: a[i].mean(), lambda i: b[i].mean(), n_boot=2000, seed=9, scale=100)
    for k in ("diff", "lo", "hi"):
        assert metric[k] == pytest.approx(plain[k], abs=1e-9)
    assert metric["undefined"] == 0 and metric["n"] == 60


def test_metric_undefined_resamples_are_counted():
    x = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    # undefined (NaN) when a resample misses the one unit with a 1
    ci = paired_bootstrap_metric(5, lambda i: 1.0 if x[i].any() else np.nan, lambda i: 0.0, n_boot=500, seed=1)
    assert 0 < ci["undefined"] < 500 and ci["lo"] == ci["hi"] == 1.0


def test_pooled_concatenates_and_other_stats():
    (a, b) = pooled([([1, 0], [0, 0]), (np.array([1, 1, 1]), np.array([1, 0, 1]))])
    assert a.tolist() == [1, 0, 1, 1, 1] and b.tolist() == [0, 0, 1, 0, 1]
    ci = paired_bootstrap(a, b, n_boot=500, stat=np.median)
    assert ci["diff"] == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1])
    with pytest.raises(ValueError):
        pooled([])


def test_coverage_on_simulated_data():
    """200 data sets of 100 paired Bernoulli questions: the 95% interval covers the true difference 90-99%."""
    rng = np.random.default_rng(11)
    p_both, p_a, p_b = 0.4, 0.2, 0.1  # per question: both right / only A / only B; true diff 0.1
    covered = 0
    for rep in range(200):
        u = rng.random(100)
        a = (u < p_both + p_a).astype(float)
        b = ((u < p_both) | (u >= p_both + p_a) & (u < p_both + p_a + p_b)).astype(float)
        ci = paired_bootstrap(a, b, n_boot=1000, seed=rep)
        covered += ci["lo"] <= p_a - p_b <= ci["hi"]
    assert 180 <= covered <= 198


# --- reading BoN runs -----------------------------------------------------------------------------------

def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_bon_correctness_main_and_side_picks(tmp_path):
    cands = tmp_path / "cands.jsonl"
    write_jsonl(cands, [{"id": q, "sample": s, "input": "?", "response": "r", "true_false": (q + s) % 2 == 0}
                        for q in range(3) for s in range(4)])
    sel = [{"id": q, "method": "prm:mean_log_odds", "sample": q, "true_false": (2 * q) % 2 == 0,
            "picks": {"self_consistency": 1, "orm_proxy": 0}} for q in range(3)]
    write_jsonl(tmp_path / "run" / "b.selected.jsonl", sel)
    assert bon_correctness(tmp_path / "run", "b") == {0: 1.0, 1: 1.0, 2: 1.0}
    assert bon_correctness(tmp_path / "run", "b", "prm:mean_log_odds") == {0: 1.0, 1: 1.0, 2: 1.0}
    assert bon_correctness(tmp_path / "run", "b", "self_consistency", cands) == {0: 0.0, 1: 1.0, 2: 0.0}
    with pytest.raises(DataError, match="candidate file"):
        bon_correctness(tmp_path / "run", "b", "orm_proxy")
    with pytest.raises(DataError, match="no 'orm' pick"):
        bon_correctness(tmp_path / "run", "b", "orm", cands)
    # the expectation of a uniform pick among the first 2 (samples 0, 1): one of the two is right
    assert random_correctness(cands, 2) == {0: 0.5, 1: 0.5, 2: 0.5}
    assert random_correctness(cands, 1) == {0: 1.0, 1: 0.0, 2: 1.0}


def test_paired_bon_aligns_and_adds_questions_without_candidates():
    a, b, ids = paired_bon({"x": 1.0, "y": 0.0}, {"y": 1.0, "x": 1.0}, total=4)
    assert ids == ["x", "y", None, None] and a.tolist() == [1, 0, 0, 0] and b.tolist() == [1, 1, 0, 0]
    with pytest.raises(DataError, match="different questions"):
        paired_bon({"x": 1.0}, {"y": 1.0})
    with pytest.raises(DataError, match="total"):
        paired_bon({"x": 1.0}, {"x": 1.0}, total=0)
