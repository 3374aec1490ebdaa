"""The mini world's claims over several seeds: runs scripts/demo.sh once per seed and summarises its results.json.

    python benchmarks/world_claims.py [--seeds 0,1,2] [--out runs/world_claims] [--reuse]

Each seed is a full demo run (4-7 minutes on 2 CPU cores) into <out>/seed-<s> (DEMO_OUT, DEMO_SEED; any
other DEMO_* variable in the environment passes through). --reuse skips seeds whose results.json exists.
Reported, mean and spread (sample standard deviation; min..max) over the seeds:

- Spearman(learned weights, known quality) and the largest weight of a corrupted domain;
- BoN accuracy of DreamPRM, vanilla PRM, the trained ORM (when the demo trained one) and random pick on each
  test benchmark;

and whether each claim holds: (1) Spearman >= 0.8 and every corrupted domain below 1, on the mean over seeds
and in every seed; (2) BoN accuracy DreamPRM > vanilla PRM > random pick, on the mean over seeds per benchmark.
Writes <out>/claims.json and <out>/CLAIMS.md.
"""
from __future__ import annotations

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAIM_SPEARMAN = 0.8
BON_ROWS = ("DreamPRM", "Vanilla PRM", "ORM", "Random pick", "Self-consistency", "Oracle (pass@N)")


def stats(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs), "values": xs}


def fmt(s: dict, d: int = 3) -> str:
    return f"{s['mean']:.{d}f} ± {s['sd']:.{d}f} ({s['min']:.{d}f}..{s['max']:.{d}f})"


def run_seed(seed: int, out: Path, reuse: bool) -> tuple[dict, float | None]:
    res = out / f"seed-{seed}" / "results.json"
    if reuse and res.is_file():
        return json.loads(res.read_text()), None
    env = dict(os.environ, DEMO_OUT=str(out / f"seed-{seed}"), DEMO_SEED=str(seed))
    log = out / f"seed-{seed}.log"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env, stdout=f, stderr=subprocess.STDOUT)
    secs = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"seed {seed}: demo failed (exit {done.returncode}); see {log}")
    print(f"seed {seed}: demo finished in {secs:.0f} s ({log})", flush=True)
    return json.loads(res.read_text()), secs


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/world_claims", help="directory of the runs (relative to the repo root)")
    ap.add_argument("--reuse", action="store_true", help="reuse runs that already have results.json")
    a = ap.parse_args(argv)
    out = Path(a.out) if Path(a.out).is_absolute() else ROOT / a.out
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    runs, secs = {}, {}
    for s in seeds:
        runs[s], secs[s] = run_seed(s, out, a.reuse)

    rs = list(runs.values())
    benches = list(rs[0]["bon"])
    summary = {"seeds": seeds, "demo_seconds": secs,
               "spearman": stats([r["spearman"] for r in rs]),
               "max_corrupted_weight": stats([r["max_corrupted_weight"] for r in rs]),
               "weights": {d["name"]: stats([next(x["weight"] for x in r["domains"] if x["name"] == d["name"])
                                             for r in rs]) for d in rs[0]["domains"]},
               "quality": {d["name"]: d["quality"] for d in rs[0]["domains"]},
               "bon": {b: {m: stats([r["bon"][b][m] for r in rs]) for m in BON_ROWS
                           if all(r["bon"][b].get(m) is not None for r in rs)}  # the ORM only when trained
                       for b in benches}}
    c1_mean = summary["spearman"]["mean"] >= CLAIM_SPEARMAN and summary["max_corrupted_weight"]["mean"] < 1
    c1_each = all(r["claims"]["weights_follow_quality"] for r in rs)
    c2 = {b: summary["bon"][b]["DreamPRM"]["mean"] > summary["bon"][b]["Vanilla PRM"]["mean"]
          > summary["bon"][b]["Random pick"]["mean"] for b in benches}
    c2_each = {b: sum(r["claims"]["dreamprm_gt_vanilla_gt_random"][b] for r in rs) for b in benches}
    summary["claims"] = {"1_weights_follow_quality": {"on_mean": c1_mean, "every_seed": c1_each},
                         "2_dreamprm_gt_vanilla_gt_random": {"on_mean": c2, "seeds_holding": c2_each}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps(summary, indent=2) + "\n")

    L = [f"# Mini world claims over seeds {', '.join(map(str, seeds))}", "",
         "mean ± sample sd (min..max); every number from the runs' results.json (dreamprm.world_report).", "",
         f"- Spearman(weights, quality): {fmt(summary['spearman'])}",
         f"- max corrupted-domain weight: {fmt(summary['max_corrupted_weight'])}", "",
         "| domain | quality | weight |", "|---|---|---|"]
    for d, s in summary["weights"].items():
        L.append(f"| {d} | {summary['quality'][d]:.2f} | {fmt(s)} |")
    L += ["", "| BoN accuracy (%) | " + " | ".join(benches) + " |", "|---" * (1 + len(benches)) + "|"]
    for m in (m for m in BON_ROWS if m in summary["bon"][benches[0]]):
        L.append(f"| {m} | " + " | ".join(fmt(summary["bon"][b][m], 1) for b in benches) + " |")
    L += ["", f"Claim 1 (Spearman >= {CLAIM_SPEARMAN} and corrupted domains below 1): on the mean "
              f"**{'holds' if c1_mean else 'does not hold'}**; in every seed: **{'yes' if c1_each else 'no'}**.",
          "Claim 2 (DreamPRM > vanilla PRM > random pick): " + "; ".join(
              f"{b} on the mean **{'holds' if c2[b] else 'does not hold'}** ({c2_each[b]}/{len(rs)} seeds)"
              for b in benches) + "."]
    if any(v is not None for v in secs.values()):
        L.append("Demo wall time per seed (s): " + ", ".join(f"{s}: {v:.0f}" for s, v in secs.items() if v))
    text = "\n".join(L) + "\n"
    (out / "CLAIMS.md").write_text(text)
    print(text)
    return summary


if __name__ == "__main__":
    main()
