"""The planner's expected MC rollouts (`dreamprm/plan.py`) against the rule itself, simulated."""
import numpy as np
import pytest

from dreamprm.mc import paper_rule
from dreamprm.plan import expected_rollouts, fit_p, new_rollouts


def simulate(ps, lo=4, hi=16, seed=0):
    """Nodes run one rollout at a time under mc.paper_rule; the verdict is drawn like a completion."""
    rng = np.random.default_rng(seed)
    scores, times = [], []
    for p in ps:
        score, t = int(rng.random() < p), 1
        while (k := paper_rule(score, t, lo, hi)) > 0:
            score += int((rng.random(k) < p).sum())
            t += k
        scores.append(score)
        times.append(t)
    return np.array(scores), np.array(times)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
def test_the_closed_form_is_the_rules_mean(p):
    n = 20000
    _, times = simulate([p] * n)
    mixed = 1 - p ** 4 - (1 - p) ** 4
    se = 12 * (mixed * (1 - mixed) / n) ** 0.5  # the simulated mean's standard error
    assert float(new_rollouts(p)) == pytest.approx((times - 1).mean(), abs=4 * se + 1e-9)
    assert float(new_rollouts(p, rule="fixed")) == 3


def test_fitted_p_predicts_the_rollouts_and_plugging_in_accuracies_does_not():
    rng = np.random.default_rng(1)
    ps = rng.choice([0.97, 0.03, 0.5, 0.75], size=6000, p=[0.4, 0.3, 0.2, 0.1])
    scores, times = simulate(ps, seed=2)
    actual = (times - 1).mean()
    assert expected_rollouts(scores, times) == pytest.approx(actual, rel=0.02)
    plug_in = new_rollouts(scores / times).mean()
    assert abs(plug_in - actual) / actual > 0.05  # the bias the fit avoids
    w = fit_p(scores, times)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="score <= times"):
        fit_p([3], [2])
    with pytest.raises(ValueError, match="unknown rule"):
        new_rollouts(0.5, rule="adaptive")
