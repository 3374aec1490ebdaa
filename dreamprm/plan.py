"""Planning a run before it spends GPU-days (issue 15, in progress): the MC stage's expected rollouts.

A tree node starts at times = 1 with its response's verdict; the paper rule (`mc.paper_rule`) then draws
`min - 1` more rollouts, and runs on to `max` once the node's score is mixed (some right, some wrong). With p the
chance that a completion from the node's prefix is right, and the verdict drawn like a completion:

    E[new rollouts | p] = (min - 1) + (max - min) * (1 - p^min - (1 - p)^min)

The distribution of p over nodes comes from a pilot run's `estimate.jsonl` (score, times per node). Plugging in
each node's accuracy is biased (a mixed node ran to `max`, but its accuracy predicts fewer), so p's distribution
is fitted instead: a nonparametric maximum-likelihood estimate on a grid (EM). The stopping rule looks only at the
outcomes, so the likelihood of a node is the binomial one, p^score (1 - p)^(times - score).
"""
from __future__ import annotations

import numpy as np

GRID = np.linspace(0.0, 1.0, 101)


def new_rollouts(p, lo: int = 4, hi: int = 16, rule: str = "paper"):
    """Expected rollouts a node draws after its response's verdict (`mc.RULES`), for p in [0, 1] (array ok)."""
    p = np.asarray(p, dtype=float)
    if rule == "fixed":
        return np.full_like(p, max(lo - 1, 0))
    if rule != "paper":
        raise ValueError(f"unknown rule {rule!r}; choose paper or fixed")
    lo = max(lo, 1)
    mixed = 1.0 - p ** lo - (1.0 - p) ** lo if lo > 1 else np.zeros_like(p)
    return (lo - 1) + (hi - lo) * mixed


def fit_p(scores, times, grid: np.ndarray = GRID, iterations: int = 500) -> np.ndarray:
    """Mixing weights over `grid` of the nodes' success probability, from their (score, times) counts (EM for
    the nonparametric maximum-likelihood estimate)."""
    s, t = np.asarray(scores, dtype=float)[:, None], np.asarray(times, dtype=float)[:, None]
    if not len(s) or (t < 1).any() or (s < 0).any() or (s > t).any():
        raise ValueError("need at least one node with 0 <= score <= times and times >= 1")
    with np.errstate(divide="ignore", invalid="ignore"):
        loglik = s * np.log(grid) + (t - s) * np.log1p(-grid)  # [nodes, grid]; 0 * log 0 is 0 below
    loglik = np.where(np.isnan(loglik), 0.0, loglik)
    lik = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    w = np.full(len(grid), 1.0 / len(grid))
    for _ in range(iterations):
        post = lik * w
        post /= post.sum(axis=1, keepdims=True)
        w = post.mean(axis=0)
    return w


def expected_rollouts(scores, times, lo: int = 4, hi: int = 16, rule: str = "paper") -> float:
    """Mean new rollouts per node that the rule draws for nodes like the pilot's (fitted p distribution)."""
    w = fit_p(scores, times)
    return float((w * new_rollouts(GRID, lo, hi, rule)).sum())
