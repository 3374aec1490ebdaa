"""The figures of the pipeline, drawn from files the stages write (never by hand)."""
from __future__ import annotations

import json
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display on a GPU node or in CI
    import matplotlib.pyplot as plt

    return plt


def plot_weights(weights: dict[str, float], out: Path, title: str = "Learned domain weights") -> Path:
    """Sorted bar chart of the final domain weights, like the paper's figure; 1.0 marked."""
    plt = _plt()
    items = sorted(weights.items(), key=lambda kv: kv[1], reverse=True)
    fig, ax = plt.subplots(figsize=(max(4, 0.55 * len(items) + 1.5), 3.4))
    ax.bar([k for k, _ in items], [v for _, v in items], color="#4C72B0")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_ylabel("weight")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_weights_over_time(log: Path, out: Path) -> Path:
    """Every domain's weight against the iteration, from a reweighting log.jsonl."""
    plt = _plt()
    rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in rows[0]["weights"] if rows else []:
        ax.plot([r["iteration"] for r in rows], [r["weights"][name] for r in rows], label=name, lw=1.2)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("iteration")
    ax.set_ylabel("weight")
    ax.set_title("Domain weights during training")
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
