"""The three reweighting granularities side by side on one CPU mini world run (scripts/demo_granularity.sh).

    python -m dreamprm.miniworld.granularity --path . --run runs/granularity

Reads <run>/world/{world.json, policy.json} (each domain's known quality, which questions were corrupted) and
<run>/<name>/{summary.json, instance_weights.json} for the runs domain, instance_table (scalar PRM), instance_net
and instance_table_generative (generative PRM); writes
<run>/GRANULARITY.md, <run>/granularity.json and <run>/figs/granularity.png.

Two questions, each with its uncertainty:
- Do the per-domain weights rank the domains by quality? Spearman of each run's per-domain weight (learned, or
  the mean of its instances' weights) with the known quality, and its p-value (6 train domains: only a large
  rho is evidence).
- Do the instance weights tell corrupted questions from clean ones? AUROC (the chance that a clean instance
  outweighs a corrupted one), with a 95% bootstrap interval over instances.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cli import StageArgs, parse_args
from ..io import DataError, atomic_write_text, read_json, write_json
from ..stats import _indices
from ..stepeval import auroc
from .report import CLAIM_SPEARMAN, spearman

RUNS = (("domain", "Domain weights (scalar PRM)"), ("instance_table", "Instance table (scalar PRM)"),
        ("instance_net", "Instance net (generative PRM)"),
        ("instance_table_generative", "Instance table (generative PRM)"))
CLAIM_AUROC = 0.8
N_BOOT = 2000


def auroc_interval(weights: list[float], clean: list[bool], n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """AUROC of clean (1) vs corrupted (-1) instances by weight, and its 95% percentile bootstrap interval."""
    w, y = np.asarray(weights, dtype=float), np.where(np.asarray(clean), 1, -1)
    point = auroc(w.tolist(), y.tolist())
    boots = [a for idx in _indices(len(w), n_boot, seed) for a in (auroc(w[i].tolist(), y[i].tolist()) for i in idx)
             if a is not None]
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return {"auroc": point, "lo": float(lo), "hi": float(hi), "n": len(w), "n_corrupted": int((y == -1).sum()),
            "n_boot": n_boot}


def granularity(run: Path) -> dict:
    world = read_json(run / "world/world.json", "world description")
    policy = read_json(run / "world/policy.json", "SIMULATED policy")
    quality = {d["name"]: d["quality"] for d in world["domains"] if d["role"] == "train"}
    corrupted = {q: v["corrupted"] for q, v in policy["questions"].items()}
    out = {"quality": quality, "runs": {}}
    for name, label in RUNS:
        summary_file = run / name / "summary.json"
        if not summary_file.is_file():
            continue
        summary = read_json(summary_file, "training summary")
        weights = summary["weights"]
        have = [d for d in quality if d in weights]
        rho, p = spearman([weights[d] for d in have], [quality[d] for d in have]) if len(have) > 2 else (None, None)
        row = {"label": label, "weights": weights, "spearman": rho, "spearman_p": p,
               "by_domain": summary.get("instance_weights_by_domain")}
        inst = run / name / "instance_weights.json"
        if inst.is_file():
            rows = read_json(inst, "instance weights")
            unknown = [r["question"] for r in rows if r["question"] not in corrupted]
            if unknown:
                raise DataError(f"{inst}: question {unknown[0]!r} is not in {run / 'world/policy.json'}")
            row["corrupted_vs_clean"] = auroc_interval([r["weight"] for r in rows],
                                                       [not corrupted[r["question"]] for r in rows])
            w = np.array([r["weight"] for r in rows])
            bad = np.array([corrupted[r["question"]] for r in rows])
            row["mean_weight"] = {"clean": float(w[~bad].mean()), "corrupted": float(w[bad].mean())}
        out["runs"][name] = row
    if not out["runs"]:
        raise DataError(f"{run}: no run of {', '.join(n for n, _ in RUNS)} has a summary.json")
    return out


def _f(x, spec=".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def page(res: dict, run: Path) -> str:
    q = res["quality"]
    names = [n for n, _ in RUNS if n in res["runs"]]
    L = ["# Reweighting granularity on the CPU mini world", "",
         f"Run `{run}` (scripts/demo_granularity.sh): bi-level runs on the same train and meta data, each from a "
         "warm PRM of its kind (scalar: DreamPRM's head; generative: + / - tokens, which the instance net reads). "
         "Per-domain weight: learned (domain), or the mean of the domain's instance weights (the net: the weight "
         "it gave each instance when it last trained on it). The policy is SIMULATED.", "",
         "| domain | quality | " + " | ".join(res["runs"][n]["label"] for n in names) + " |",
         "|---|---:|" + "---:|" * len(names)]
    for d in sorted(q, key=lambda d: -q[d]):
        cells = []
        for n in names:
            r = res["runs"][n]
            s = (r.get("by_domain") or {}).get(d)
            cells.append(_f(r["weights"].get(d)) + (f" ± {s['std']:.3f}" if s else ""))
        L.append(f"| {d} | {q[d]:.2f} | " + " | ".join(cells) + " |")
    L += ["", "(± : the spread of the domain's instance weights, population standard deviation)", "",
          "| run | Spearman with quality (p) | AUROC clean vs corrupted [95% CI] | mean weight clean / corrupted |",
          "|---|---|---|---|"]
    for n in names:
        r = res["runs"][n]
        a = r.get("corrupted_vs_clean")
        auc = f"{_f(a['auroc'])} [{_f(a['lo'])}, {_f(a['hi'])}] (n = {a['n']}, {a['n_corrupted']} corrupted)" if a else "-"
        m = r.get("mean_weight")
        L.append(f"| {r['label']} | {_f(r['spearman'])} ({_f(r['spearman_p'])}) | {auc} | "
                 + (f"{m['clean']:.3f} / {m['corrupted']:.3f}" if m else "-") + " |")
    L += ["", f"Claims (issue 14): Spearman >= {CLAIM_SPEARMAN} for the per-domain weights, AUROC >= {CLAIM_AUROC} "
          "for the instance table. Six train domains: a Spearman p-value above 0.05 is no evidence either way.",
          "", "![per-domain weights](figs/granularity.png)", ""]
    return "\n".join(L)


def plot(res: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = res["quality"]
    domains = sorted(q, key=lambda d: -q[d])
    names = [n for n, _ in RUNS if n in res["runs"]]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(names)
    for k, n in enumerate(names):
        r = res["runs"][n]
        ax.bar(np.arange(len(domains)) + (k - (len(names) - 1) / 2) * width,
               [r["weights"].get(d, np.nan) for d in domains], width, label=r["label"])
    ax.plot(np.arange(len(domains)), [q[d] for d in domains], "k.--", label="known quality")
    ax.set_xticks(np.arange(len(domains)), domains)
    ax.set_ylabel("per-domain weight")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


@dataclass
class GranularityArgs(StageArgs):
    """Compare domain, instance-table and instance-net weights of one mini world run (GRANULARITY.md)."""
    run: str = field(default="runs/granularity", metadata={"help": "output directory of scripts/demo_granularity.sh"})


def main(argv=None) -> dict:
    cfg = parse_args(GranularityArgs, argv)
    run = cfg.resolve(cfg.run)
    res = granularity(run)
    plot(res, run / "figs/granularity.png")
    write_json(run / "granularity.json", res)
    atomic_write_text(run / "GRANULARITY.md", page(res, run))
    for n, r in res["runs"].items():
        a = r.get("corrupted_vs_clean")
        print(f"  {n:<15} Spearman {_f(r['spearman'])}" + (f"; AUROC {_f(a['auroc'])} [{_f(a['lo'])}, {_f(a['hi'])}]"
                                                            if a else ""))
    return res


if __name__ == "__main__":
    main()
