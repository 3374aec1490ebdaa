"""Instance-level weights (DreamPRM-1.5): one weight per training instance instead of one per domain.

- `InstanceTable`: one raw parameter per instance id, started at `initialization`, weight = activation(raw).
- `InstanceNet`: a weight computed from the PRM's own view of an instance, so it also weighs instances it
  never saw: the two-way softmax over the `+` / `-` logits at each supervised position goes through a small
  MLP (2 -> hidden -> 1, LeakyReLU), the outputs are averaged over the instance's positions, then the
  activation. The 1.5 release averages before the activation; so does this.

Unlike the domain weights (softplus, normalised to mean 1), neither is normalised: the 1.5 release multiplies
the raw activated weight into each instance's loss, and the activation alone keeps it in range.
`InstanceNet.remember` keeps the weight each instance last got, which stands in for a table in the logs.
`per_domain` summarises instance weights per domain (mean, spread) so they can be read next to domain weights.
"""
from __future__ import annotations

from statistics import fmean, pstdev

import torch
from torch import nn

# The 1.5 release's names in brackets: LeakyReLU, ReLU, No, Clip, sigmoid.
ACTIVATIONS = {
    "leaky_relu": nn.LeakyReLU(),
    "relu": nn.ReLU(),
    "none": nn.Identity(),
    "clip": lambda t: t.clamp(-1.0, 3.0),
    "sigmoid": nn.Sigmoid(),
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
    return ACTIVATIONS[name]


class InstanceTable(nn.Module):
    def __init__(self, ids: list[str], activation_name: str = "leaky_relu", initialization: float = 1.0):
        super().__init__()
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"instance ids must be unique; {dup!r} appears more than once")
        self.ids, self.activation_name = list(ids), activation_name
        self.index = {i: k for k, i in enumerate(self.ids)}
        self.act = activation(activation_name)
        self.raw = nn.Parameter(torch.full((len(ids),), float(initialization)))

    def forward(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The weights of the instances at `rows` (table positions), or of all of them."""
        w = self.act(self.raw)
        return w if rows is None else w[rows]

    def as_dict(self) -> dict[str, float]:
        with torch.no_grad():
            return {i: round(float(w), 6) for i, w in zip(self.ids, self())}


class InstanceNet(nn.Module):
    def __init__(self, hidden: int = 500, layers: int = 1, activation_name: str = "leaky_relu"):
        super().__init__()
        blocks, width = [], 2
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LeakyReLU()]
            width = hidden
        self.mlp = nn.Sequential(*blocks, nn.Linear(width, 1))
        self.activation_name = activation_name
        self.act = activation(activation_name)
        self.seen: dict[str, float] = {}  # instance id -> the weight it got when last trained on

    def forward(self, label_logits: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """One weight per instance from the `+` / `-` logits at its positions ([positions, 2], instances in
        order, `sizes[i]` positions for instance i)."""
        out = self.mlp(label_logits.float().softmax(-1)).squeeze(-1)
        return self.act(torch.stack([part.mean() for part in out.split(sizes)]))

    def remember(self, ids: list[str], weights: torch.Tensor) -> None:
        """Keep the weights just given to `ids`: the net has no table to read, so what it gave each train
        instance the last time it saw it stands for that instance in logs and instance_weights.json."""
        self.seen.update(zip(ids, (round(w, 6) for w in weights.detach().tolist())))

    def as_dict(self) -> dict[str, float]:
        return dict(self.seen)


def per_domain(weights: dict[str, float], domain_of: dict[str, str]) -> dict[str, dict]:
    """{domain: {"mean", "std", "n"}} over the instances of each domain (population std; 0 for one)."""
    groups: dict[str, list[float]] = {}
    for i, w in weights.items():
        groups.setdefault(domain_of[i], []).append(w)
    return {d: {"mean": round(fmean(ws), 6), "std": round(pstdev(ws), 6), "n": len(ws)}
            for d, ws in sorted(groups.items())}
