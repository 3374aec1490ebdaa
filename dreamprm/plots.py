"""The figures of the pipeline, drawn from files the stages write (never by hand)."""
from __future__ import annotations

import json
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display on a GPU node or in CI
    import matplotlib.pyplot as plt

    return plt


def plot_weights(weights: dict[str, float], out: Path, title: str = "Learned domain weights",
                 spread: dict[str, float] | None = None) -> Path:
    """Sorted bar chart of the final domain weights, like the paper's figure; 1.0 marked. `spread`: error bars
    (the standard deviation of each domain's instance weights, when the bars are their means)."""
    plt = _plt()
    items = sorted(weights.items(), key=lambda kv: kv[1], reverse=True)
    fig, ax = plt.subplots(figsize=(max(4, 0.55 * len(items) + 1.5), 3.4))
    ax.bar([k for k, _ in items], [v for _, v in items], color="#4C72B0",
           yerr=[spread.get(k, 0.0) for k, _ in items] if spread else None, capsize=3)
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
    names = sorted({n for r in rows for n in r["weights"]})  # an instance net's early rows lack unseen domains
    for name in names:
        ax.plot([r["iteration"] for r in rows], [r["weights"].get(name, float("nan")) for r in rows], label=name,
                lw=1.2)
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


def plot_bon_scaling(curves: dict[str, dict[str, dict[int, float]]], out: Path) -> Path:
    """Accuracy against N (log2 axis), one panel per benchmark, one line per method; the base model dashed.
    `curves`: benchmark -> method label -> {N: accuracy %}, as `dreamprm.bon.scaling_curves` builds it."""
    plt = _plt()
    benches = list(curves) or ["(no results)"]
    fig, axes = plt.subplots(1, len(benches), figsize=(3.2 * len(benches) + 1.6, 3.2), squeeze=False)
    for ax, b in zip(axes[0], benches):
        for label, pts in curves.get(b, {}).items():
            ns = sorted(pts)
            style = dict(ls="--", color="gray", lw=1) if label == "Base model" else dict(marker="o", ms=3, lw=1.4)
            ax.plot(ns, [pts[n] for n in ns], label=label, **style)
        ax.set_xscale("log", base=2)
        ticks = sorted({n for pts in curves.get(b, {}).values() for n in pts})
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel("N (candidates)")
        ax.set_title(b)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_step_scores(dists: dict[str, dict[str, list[float]]], out: Path, bins: int = 20,
                     title: str = "PRM step scores on correct and incorrect steps") -> Path:
    """One panel per scorer: histograms (density, shared bins on [0, 1]) of its scores on the steps labelled
    correct and on those labelled incorrect; the 0.5 threshold marked. `dists`: scorer label ->
    {"correct": [scores], "incorrect": [scores]}, e.g. from a step set and the step_eval score files."""
    plt = _plt()
    names = list(dists) or ["(no scores)"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.1 * len(names) + 0.6, 3.0), squeeze=False, sharey=True)
    edges = [i / bins for i in range(bins + 1)]
    for ax, name in zip(axes[0], names):
        d = dists.get(name, {})
        for kind, colour in (("correct", "tab:blue"), ("incorrect", "tab:red")):
            xs = d.get(kind) or []
            if xs:  # density: the two classes differ in size; the shapes are what is compared
                ax.hist(xs, bins=edges, density=True, alpha=0.55, color=colour, label=f"{kind} ({len(xs)})")
        ax.axvline(0.5, color="gray", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_xlabel("step score")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("density")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
