"""Aggregating step scores into one CoT score (SPEC stage 7 upper level, stage 8 selection).

The paper's choice is the mean of log-odds: sigmoid(mean_k log(p_k / (1 - p_k))). The same function is
the upper-level loss's CoT score during training and the selection rule at test time. All functions are
differentiable torch code over a flat score vector cut into consecutive segments (one per CoT).
"""
from __future__ import annotations

import torch

EPS = 1e-6  # keeps log-odds finite when a score saturates at 0 or 1


def log_odds(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(EPS, 1 - EPS)
    return torch.log(p) - torch.log1p(-p)


def _segments(scores: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    if any(c < 1 for c in counts):
        raise ValueError("every CoT needs at least one step score")
    return list(torch.split(scores, counts))


AGGREGATIONS = {
    "mean_log_odds": lambda s: torch.sigmoid(log_odds(s).mean()),
    "sum_log_odds": lambda s: torch.sigmoid(log_odds(s).sum()),
    "mean": lambda s: s.mean(),
    "min": lambda s: s.min(),
    "max": lambda s: s.max(),
    "prod": lambda s: s.prod(),
    "last": lambda s: s[-1],
}


def aggregate(scores: torch.Tensor, counts: list[int], how: str = "mean_log_odds") -> torch.Tensor:
    """One score per CoT from the flat per-step scores; `counts[i]` steps belong to CoT i."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}; got {how!r}")
    fn = AGGREGATIONS[how]
    return torch.stack([fn(seg) for seg in _segments(scores, counts)])
