"""The mini world's claims over several seeds: runs scripts/demo.sh once per seed and summarises its results.json.

    python benchmarks/world_claims.py [--seeds 0,1,2] [--out runs/world_claims] [--reuse]

Each seed is a full demo run (5-8 minutes on 2 idle CPU cores, up to 15 on busy ones) into <out>/seed-<s> (DEMO_OUT, DEMO_SEED; any
other DEMO_* variable in the environment passes through). --reuse skips seeds whose results.json exists.
Reported, mean and spread (sample standard deviation; min..max) over the seeds:

- Spearman(learned weights, known quality) and the largest weight of a corrupted domain;
- BoN accuracy of DreamPRM, vanilla PRM, the trained ORM (when the demo trained one) and random pick on each
  test benchmark;

and whether each claim holds: (1) Spearman >= 0.8 and every corrupted domain below 1, on the mean over seeds
and in every seed; (2) BoN accuracy DreamPRM > vanilla PRM > random pick, on the mean over seeds per benchmark;
(3) DreamPRM beats the vanilla PRM: the paired bootstrap 95% interval of the BoN accuracy difference
(dreamprm.stats, questions as units) excludes 0, in each seed (both benchmarks' questions pooled) and pooled
over seeds (all questions of all seeds). The same intervals for DreamPRM - ORM and vanilla PRM - random pick.
Per-question correctness is read from each seed's bon/<name>/<benchmark>.selected.jsonl (the pick at the
largest N; random pick: its expectation, from rollouts/<benchmark>.jsonl); a seed without those files uses the
intervals of its results.json ("intervals", see `seed_intervals`) and stays out of the pool over seeds.
Step level, when a seed has stepeval/{dreamprm,vanilla}/<set>.scores.jsonl and dreamprm.stepeval exists:
each system's macro-F1 (threshold 0.5) and the difference with a paired bootstrap interval over solutions.
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

import numpy as np

from dreamprm.stats import (bon_correctness, fmt_ci, holds, paired_bon, paired_bootstrap, paired_bootstrap_metric,
                            pooled, random_correctness)

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


# --- claims with their uncertainty -------------------------------------------------------------------------

SYSTEMS = {"DreamPRM": "dreamprm", "Vanilla PRM": "vanilla", "ORM": "orm"}  # label -> BoN run (bon/<name>)
PAIRS = (("DreamPRM", "Vanilla PRM"), ("DreamPRM", "ORM"), ("Vanilla PRM", "Random pick"))
MAIN_PAIR = "DreamPRM - Vanilla PRM"
# where a seed's step set lies, for the step labels ({set}: the name of stepeval/<name>/<set>.scores.jsonl)
STEP_SETS = ("world/steps/{set}.jsonl", "steps/{set}.jsonl")  # (world/data/<set>.jsonl: questions only)
STEP_THRESHOLD = 0.5


def _json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def seed_correctness(run: Path, benches: list[str], reported: dict) -> dict:
    """bench -> label -> id -> 1/0 correctness of each system's pick at the largest N (random pick: its
    expectation), plus bench -> "total" (questions, those without candidates counting wrong for all). A
    benchmark without both DreamPRM's and the vanilla PRM's selected files is left out."""
    res = {label: _json(run / "bon" / name / "results.json") for label, name in SYSTEMS.items()}
    out = {}
    for b in benches:
        sy = {label: bon_correctness(run / "bon" / SYSTEMS[label], b) for label, r in res.items()
              if r and b in r["benchmarks"] and (run / "bon" / SYSTEMS[label] / f"{b}.selected.jsonl").is_file()}
        if not {"DreamPRM", "Vanilla PRM"} <= set(sy):
            continue
        total = res["DreamPRM"]["benchmarks"][b]["total"]
        cands = run / "rollouts" / f"{b}.jsonl"
        if cands.is_file():
            rnd = random_correctness(cands, max(res["DreamPRM"]["n"]))
            sy["Random pick"] = {i: rnd[i] for i in sy["DreamPRM"] if i in rnd}
        out[b] = {"total": total, "systems": sy}
        for label, c in sy.items():  # the files must give the accuracy the results page reports
            acc, want = 100 * (sum(c.values()) / total), (reported.get(b) or {}).get(label)
            if want is not None and abs(acc - want) > 1e-6:
                print(f"warning: {run}: {b} {label}: {acc:.2f} % from the selected files, {want:.2f} % in "
                      "results.json")
    return out


def pair_units(corr: dict, b: str, x: str, y: str, where: str):
    """(x's, y's) per-question arrays on benchmark b, or None when a system is missing."""
    sy = corr[b]["systems"]
    if x not in sy or y not in sy:
        return None
    a, c, _ = paired_bon(sy[x], sy[y], corr[b]["total"], f"{where} {b}: {x} vs {y}")
    return a, c


def seed_intervals(r: dict) -> dict:
    """The intervals a results.json holds (dreamprm.miniworld.report), used for a seed without its selected
    files: {"A - B": {benchmark or "pooled": {"diff", "lo", "hi", "n", ...}}} under "intervals"."""
    iv = r.get("intervals") or {}
    return {k: {b: ci for b, ci in v.items() if isinstance(ci, dict) and {"diff", "lo", "hi"} <= set(ci)}
            for k, v in iv.items() if isinstance(v, dict)}


def bon_intervals(runs: dict, out: Path, benches: list[str], n_boot: int) -> dict:
    """pair -> {"per_seed": {seed: {bench | "pooled": ci}}, "over_seeds": {bench | "pooled": ci},
    "seeds_pooled": [...]}: paired bootstrap intervals in percentage points, questions as units."""
    units = {}  # pair -> seed -> bench -> (a, b)
    for s, r in runs.items():
        corr = seed_correctness(out / f"seed-{s}", benches, r["bon"])
        for x, y in PAIRS:
            got = {b: u for b in corr if (u := pair_units(corr, b, x, y, f"seed {s}")) is not None}
            if got:
                units.setdefault(f"{x} - {y}", {})[s] = got
    boot = lambda pairs: paired_bootstrap(*pooled(pairs), n_boot=n_boot, scale=100)  # noqa: E731
    summary = {}
    for x, y in PAIRS:
        key, u = f"{x} - {y}", units.get(f"{x} - {y}", {})
        per_seed = {}
        for s, r in runs.items():
            if s in u:
                per_seed[s] = {b: boot([u[s][b]]) for b in u[s]} | {"pooled": boot(u[s].values())}
                per_seed[s]["source"] = "bon files"
            elif key in seed_intervals(r):
                per_seed[s] = dict(seed_intervals(r)[key], source="results.json")
        full = [s for s in u if set(u[s]) == set(benches)]  # the pool: seeds with every benchmark
        over = {b: boot([u[s][b] for s in full]) for b in benches} if full else {}
        if full:
            over["pooled"] = boot([u[s][b] for s in full for b in benches])
        if per_seed:
            summary[key] = {"per_seed": per_seed, "over_seeds": over, "seeds_pooled": full}
    return summary


def step_set_file(run: Path, d: Path, name: str) -> Path | None:
    """The step set a seed's step scores belong to: the one its <set>.metrics.json names ("data", written by
    BoN/step_eval.py), else the first of STEP_SETS that exists."""
    m = _json(d / f"{name}.metrics.json") or {}
    paths = ([Path(m["data"])] if m.get("data") else []) + [run / t.format(set=name) for t in STEP_SETS]
    return next((p for p in paths if p.is_file()), None)


def step_level(runs: dict, out: Path, n_boot: int) -> dict:
    """DreamPRM - vanilla macro-F1 (%, threshold STEP_THRESHOLD, neutral steps left out: the contract's defaults,
    one rule for every seed) on each step set a seed scored (stepeval/{dreamprm,vanilla}/<set>.scores.jsonl),
    with a paired bootstrap interval over solutions; per seed and pooled over seeds. Empty without
    dreamprm.stepeval (the metric's one definition) or without score files."""
    try:
        from dreamprm.stepeval import read_step_scores, read_step_set, step_f1
    except ImportError:
        return {}

    data = {}  # set -> seed -> (dreamprm scores, vanilla scores, labels), per solution in one order
    for s in runs:
        run = out / f"seed-{s}"
        d = run / "stepeval"
        for f in sorted((d / "dreamprm").glob("*.scores.jsonl")):
            name = f.name[: -len(".scores.jsonl")]
            other, where = d / "vanilla" / f.name, step_set_file(run, d / "dreamprm", name)
            if not other.is_file() or where is None:
                print(f"warning: seed {s}: step set {name!r}: no vanilla scores or no step set file; left out")
                continue
            items = read_step_set(where, ROOT)  # image paths are relative to the checkout (demo: --path ROOT)
            sa, sb = read_step_scores(f), read_step_scores(other)
            use = [it for it in items if len(sa.get(it.id, ())) == len(sb.get(it.id, ())) == len(it.labels)]
            if len(use) < len(items):
                print(f"warning: seed {s}: step set {name!r}: {len(items) - len(use)} of {len(items)} solutions "
                      "without both systems' scores (one per step); left out")
            if use:
                data.setdefault(name, {})[s] = ([sa[it.id] for it in use], [sb[it.id] for it in use],
                                                [it.labels for it in use])

    def compare(parts) -> dict:
        A, B, L = ([x for p in parts for x in p[k]] for k in range(3))

        def f1(S):  # macro-F1 of the steps of the solutions at idx; None (a class absent) -> NaN, left out
            def at(idx):
                m = step_f1([S[i] for i in idx], [L[i] for i in idx], STEP_THRESHOLD)["macro_f1"]
                return np.nan if m is None else m
            return at

        ci = paired_bootstrap_metric(len(L), f1(A), f1(B), n_boot=n_boot)
        every = range(len(L))
        return dict(ci, dreamprm=f1(A)(every), vanilla=f1(B)(every))

    return {name: {"per_seed": {s: compare([v]) for s, v in by_seed.items()},
                   "over_seeds": compare(list(by_seed.values())), "seeds_pooled": list(by_seed)}
            for name, by_seed in data.items()}


def interval_lines(iv: dict, benches: list[str], seeds: list[int]) -> list[str]:
    L = []
    for key, v in iv.items():
        L += ["", f"| {key} (points) | " + " | ".join(benches) + " | both benchmarks | excludes 0 |",
              "|---" * (3 + len(benches)) + "|"]
        for s in seeds:
            ci = v["per_seed"].get(s)
            if ci:
                cells = [fmt_ci(ci[b]) if b in ci else "—" for b in (*benches, "pooled")]
                src = "" if ci["source"] == "bon files" else " (results.json)"
                yes = "yes" if holds(ci.get("pooled", {})) else "no"
                L.append(f"| seed {s}{src} | " + " | ".join(cells) + f" | {yes} |")
        o = v["over_seeds"]
        if o:
            L.append(f"| all seeds ({o['pooled']['n']} questions) | " + " | ".join(
                fmt_ci(o[b]) for b in (*benches, "pooled")) + f" | {'yes' if holds(o['pooled']) else 'no'} |")
    return L


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/world_claims", help="directory of the runs (relative to the repo root)")
    ap.add_argument("--reuse", action="store_true", help="reuse runs that already have results.json")
    ap.add_argument("--n_boot", type=int, default=10000, help="bootstrap resamples per interval")
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
    iv = bon_intervals(runs, out, benches, a.n_boot)
    summary["intervals"] = {"what": "A - B BoN accuracy (percentage points) at the largest N, paired bootstrap "
                                    "percentile 95% interval, questions as units (dreamprm.stats)",
                            "n_boot": a.n_boot, "pairs": iv}
    summary["step_level"] = step_level(runs, out, a.n_boot)
    main_iv = iv.get(MAIN_PAIR, {"per_seed": {}, "over_seeds": {}})
    c3_seed = {s: holds(ci["pooled"]) for s, ci in main_iv["per_seed"].items() if "pooled" in ci}
    c3_pool = holds(main_iv["over_seeds"]["pooled"]) if main_iv["over_seeds"] else None
    summary["claims"] = {"1_weights_follow_quality": {"on_mean": c1_mean, "every_seed": c1_each},
                         "2_dreamprm_gt_vanilla_gt_random": {"on_mean": c2, "seeds_holding": c2_each},
                         "3_dreamprm_beats_vanilla_interval": {
                             "per_seed": c3_seed, "pooled_over_seeds": c3_pool,
                             "per_benchmark_over_seeds": {b: holds(ci) for b, ci in main_iv["over_seeds"].items()
                                                          if b != "pooled"}}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps(summary, indent=2) + "\n")

    L = [f"# Mini world claims over seeds {', '.join(map(str, seeds))}", "",
         "mean ± sample sd (min..max); every number from the runs' results.json (dreamprm.miniworld.report).", "",
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
    L += ["", "## The differences with their uncertainty", "",
          "A - B in percentage points of BoN accuracy at the largest N, with a 95% paired bootstrap interval "
          f"({a.n_boot} resamples, percentile interval; `dreamprm.stats`): the questions are the units, resampled "
          "with the same indices for both systems, from each seed's `bon/<name>/<benchmark>.selected.jsonl` "
          "(random pick: its expectation per question, from the candidates). \"both benchmarks\" pools the "
          "questions of both; \"all seeds\" pools every question of every seed. The interval covers the "
          "sampling of questions, not the training seed (that spread is the table above and the seed-to-seed "
          "differences below); a percentile interval, rough when there are few questions."]
    L += interval_lines(iv, benches, seeds)
    c3 = "not available (no selected files)" if c3_pool is None else "**holds**" if c3_pool else "**does not hold**"
    L += ["", "Claim 3 (DreamPRM beats the vanilla PRM: the interval of the difference excludes 0): "
              f"{sum(c3_seed.values())}/{len(c3_seed)} seeds (both benchmarks pooled); pooled over seeds {c3}."]
    if summary["step_level"]:
        L += ["", f"## Step level: macro-F1 (%, threshold {STEP_THRESHOLD}) on the step sets", "",
              "From `stepeval/<name>/<set>.scores.jsonl` and the set's step labels (`dreamprm.stepeval.step_f1`); "
              "the interval resamples solutions.", "",
              "| step set | seed | solutions | DreamPRM | vanilla | difference [95% interval] | excludes 0 |",
              "|---|---|---|---|---|---|---|"]
        for name, v in summary["step_level"].items():
            rows = [(f"seed {s}", ci) for s, ci in v["per_seed"].items()] + [("all seeds", v["over_seeds"])]
            for who, ci in rows:
                L.append(f"| {name} | {who} | {ci['n']} | {ci['dreamprm']:.1f} | {ci['vanilla']:.1f} | "
                         f"{fmt_ci(ci)} | {'yes' if holds(ci) else 'no'} |")
    if any(v is not None for v in secs.values()):
        L += ["", "Demo wall time per seed (s): " + ", ".join(f"{s}: {v:.0f}" for s, v in secs.items() if v)]
    text = "\n".join(L) + "\n"
    (out / "CLAIMS.md").write_text(text)
    print(text)
    return summary


if __name__ == "__main__":
    main()
