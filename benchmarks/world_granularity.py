"""scripts/demo_granularity.sh over several seeds: the granularity claims with their spread across worlds.

    python benchmarks/world_granularity.py [--seeds 0,1,2] [--out runs/granularity-seeds]

Each seed is a new world (questions, corruption, SIMULATED policy) and new training randomness. Prints per run
and seed the Spearman of the per-domain weights with quality and the instance weights' AUROC (clean vs corrupted,
with its bootstrap interval), then the mean and range over seeds. Claims: Spearman >= 0.8, AUROC >= 0.8
(instance table).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/granularity-seeds")
    args = ap.parse_args()
    table: dict = {}
    for seed in args.seeds.split(","):
        out = ROOT / args.out / f"seed{seed}"
        env = {**os.environ, "DEMO_OUT": str(out), "DEMO_SEED": seed}
        subprocess.run(["bash", str(ROOT / "scripts/demo_granularity.sh")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        res = json.loads((out / "granularity.json").read_text())
        for name, r in res["runs"].items():
            a = r.get("corrupted_vs_clean") or {}
            table.setdefault(name, []).append((seed, r["spearman"], a.get("auroc"), a.get("lo"), a.get("hi")))
            print(f"seed {seed} {name:<26} Spearman {r['spearman']:.3f}"
                  + (f"  AUROC {a['auroc']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]" if a else ""), flush=True)
    print("\nover seeds (mean, min-max):")
    for name, rows in table.items():
        rho = [r[1] for r in rows]
        line = f"  {name:<26} Spearman {sum(rho) / len(rho):.3f} ({min(rho):.3f}-{max(rho):.3f})"
        auc = [r[2] for r in rows if r[2] is not None]
        if auc:
            line += f"  AUROC {sum(auc) / len(auc):.3f} ({min(auc):.3f}-{max(auc):.3f})"
        print(line)


if __name__ == "__main__":
    main()
