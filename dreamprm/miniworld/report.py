"""The results page of a CPU mini world run (scripts/demo.sh): RESULTS.md and results.json, from the run's files.

    python -m dreamprm.miniworld.report --path . --run runs/demo

Reads only what the stages wrote under --run:

    world/world.json, world/policy.json      the domains' known quality; the SIMULATED policy's right track
    mc/estimate.jsonl                        MC labels per domain, on the right and on the wrong track
    reweighting/{domain_weights.json, log.jsonl, summary.json}, vanilla/summary.json, orm/summary.json
    bon/<name>/results.json                  BoN accuracy per benchmark and method (BoN/pick.py; name: dreamprm,
                                             vanilla, orm = the trained ORM, one score per response)
    bon/<name>/<benchmark>.scores.jsonl, rollouts/<benchmark>.jsonl   the PRMs' step scores, clean vs erroneous
    bon/<name>/<benchmark>.selected.jsonl    each question's pick at the largest N and whether it is right
    world/steps/<set>.jsonl                  the step set (dreamprm.miniworld.world steps: every step labelled by the world)
    stepeval/<name>/<set>.{metrics.json, scores.jsonl}   BoN/step_eval.py (name: dreamprm, vanilla, random)

and writes <run>/RESULTS.md (tables and the figures in <run>/figs) and <run>/results.json (every number on the
page, for benchmarks/world_claims.py). Every number comes from those files; nothing is tuned or re-run here.

results.json, the keys added by issue 13:

    "step_level": {<set>: {                  one entry per step set BoN/step_eval.py scored (the demo: stepbench)
        "file", "n_solutions", "n_steps": {"correct", "incorrect", "neutral"}, "threshold" (0.5), "neutral",
        "prms": {"DreamPRM" | "Vanilla PRM" | "Random": {
            "macro_f1", "f1_correct", "f1_incorrect",       percent, at the threshold, every step pooled
            "heldout": {"macro_f1", "thresholds": [chosen on half A, chosen on half B]},
            "first_error": {"acc_erroneous", "acc_correct", "f1"},   percent, at the threshold; f1 = their
                                                                     harmonic mean (ProcessBench)
            "auroc",                                          correct vs incorrect steps, in [0, 1]
            "by_dataset": {<dataset>: {"macro_f1", "n_solutions"}}}},
        "published_overall_macro_f1": VisualProcessBench's published numbers (dreamprm.stepeval.PUBLISHED)}}
    "intervals": {                           paired bootstrap (dreamprm.stats), 95% percentile intervals
        "<A> - <B>": {<benchmark> | "pooled": ci},   BoN accuracy at the largest N, percentage points, questions as
                                     units (pooled: both benchmarks' questions); pairs "DreamPRM - Vanilla PRM",
                                     "DreamPRM - ORM", "Vanilla PRM - Random pick" (those whose files exist)
        "step_macro_f1": {"<A> - <B>": {<dataset> | "pooled": ci}},  macro-F1 at the threshold, points,
                                     solutions as units; pairs "DreamPRM - Vanilla PRM", "Vanilla PRM - Random"
        "about": {"n_boot", "level", "seed", "threshold", "what"}}
    ci = {"diff", "lo", "hi", "n", "n_boot", "level", "holds"}; "holds": lo > 0 (A better than B)
    "claims": ... "dreamprm_beats_vanilla_interval": {"bon": {<benchmark> | "pooled": bool},
                                                      "step_macro_f1": {<dataset> | "pooled": bool}}

A claim "DreamPRM beats the vanilla PRM" holds only where the interval of the difference excludes 0.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cli import StageArgs, parse_args
from ..io import read_json, read_records, write_json
from ..steps import step_prefixes

# (label, BoN run, method); the ORM is the trained one (bon/orm, scored per response), the proxy an ablation
METHODS = (("DreamPRM", "dreamprm", "prm"), ("Vanilla PRM", "vanilla", "prm"), ("ORM", "orm", "orm"),
           ("ORM proxy: DreamPRM last-step score (ablation)", "dreamprm", "prm:last"),
           ("Self-consistency", "dreamprm", "self_consistency"), ("Random pick", "dreamprm", "random"),
           ("Base model (one sample)", "dreamprm", "base"), ("Oracle (pass@N)", "dreamprm", "oracle"))
RUNS = ("dreamprm", "vanilla", "orm")
CLAIM_SPEARMAN = 0.8
# step-level scorers: (label, BoN/step_eval.py run under stepeval/<name>)
STEP_RUNS = (("DreamPRM", "dreamprm"), ("Vanilla PRM", "vanilla"), ("Random", "random"))
BON_PAIRS = (("DreamPRM", "Vanilla PRM"), ("DreamPRM", "ORM"), ("Vanilla PRM", "Random pick"))
STEP_PAIRS = (("DreamPRM", "Vanilla PRM"), ("Vanilla PRM", "Random"))
MAIN_PAIR = "DreamPRM - Vanilla PRM"
N_BOOT = 10000


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    from scipy.stats import spearmanr

    res = spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


class Tracks:
    """Which step prefixes of a world question left the right track (the SIMULATED policy's own reading)."""

    def __init__(self, policy_file: Path):
        from .simulated import SimulatedPolicy

        self.sim = SimulatedPolicy(policy_file, verbose=False)

    def wrong(self, qid: str, prefix: str) -> bool:
        return self.sim.read_prefix(qid, prefix)[1]

    def corrupted(self, qid: str) -> bool:
        return bool(self.sim.question(qid)["corrupted"])


def mc_label_table(run: Path, tracks: Tracks) -> dict:
    """Mean MC label per domain of nodes on the right / wrong track, split by clean and corrupted questions."""
    path = run / "mc" / "estimate.jsonl"
    if not path.is_file():
        return {}
    acc = defaultdict(list)
    for x in read_records(path):
        track = "wrong" if tracks.wrong(x["id"], x["add"]) else "right"
        kind = "corrupted" if tracks.corrupted(x["id"]) else "clean"
        acc[(x["dataset"], track, kind)].append(float(x["accuracy"]))
        acc[(x["dataset"], "all", "all")].append(float(x["accuracy"]))
    out = defaultdict(dict)
    for (d, track, kind), v in acc.items():
        out[d][f"{track}/{kind}"] = {"n": len(v), "mean": sum(v) / len(v)}
    return dict(out)


def step_score_table(run: Path, name: str, benchmarks: list[str], tracks: Tracks) -> dict:
    """Mean PRM score of benchmark candidates' step prefixes on the right and wrong track, by question kind."""
    sums = defaultdict(list)
    for b in benchmarks:
        scores, cands = run / "bon" / name / f"{b}.scores.jsonl", run / "rollouts" / f"{b}.jsonl"
        if not (scores.is_file() and cands.is_file()):
            continue
        resp = {(r["id"], r["sample"]): r["response"] for r in read_records(cands)}
        for q in read_records(scores):
            kind = tracks.sim.question(q["id"])["kind"]
            for c in q["candidates"]:
                prefixes = step_prefixes(resp[(q["id"], c["sample"])])
                for p, s in zip(prefixes, c["scores"]):
                    track = "wrong" if tracks.wrong(q["id"], p) else "right"
                    sums[(kind, track)].append(float(s))
                    sums[("all", track)].append(float(s))
    out = defaultdict(dict)
    for (kind, track), v in sums.items():
        out[kind][track] = {"n": len(v), "mean": sum(v) / len(v)}
    return dict(out)


# --- step level and the intervals (issue 13) ---------------------------------------------------------------

def _ci(ci: dict) -> dict:
    from ..stats import holds

    return {**ci, "holds": holds(ci)}


def step_sets(run: Path) -> list[str]:
    """The step sets DreamPRM was evaluated on: the names of stepeval/dreamprm/<set>.metrics.json."""
    d = run / "stepeval" / "dreamprm"
    return sorted(f.name[: -len(".metrics.json")] for f in d.glob("*.metrics.json")) if d.is_dir() else []


def read_step_runs(run: Path, name: str) -> dict | None:
    """One step set with every scorer's metrics and scores: {"file", "items": [StepItem] (those every scorer
    scored, one score per step), "left_out", "metrics": {label: metrics.json}, "scores": {label: [per item]}}."""
    from ..stepeval import read_step_scores, read_step_set

    metrics, scores = {}, {}
    for label, r in STEP_RUNS:
        m, sc = (run / "stepeval" / r / f"{name}.{x}" for x in ("metrics.json", "scores.jsonl"))
        if m.is_file() and sc.is_file():
            metrics[label], scores[label] = read_json(m, "step-level metrics file"), read_step_scores(sc)
    if "DreamPRM" not in metrics:
        return None
    path = run / "world" / "steps" / f"{name}.jsonl"  # the demo's layout; else where step_eval read it
    path = path if path.is_file() else Path(metrics["DreamPRM"]["data"])
    items = read_step_set(path, run)
    used = [it for it in items if all(len(s.get(it.id) or ()) == len(it.steps) for s in scores.values())]
    return {"file": str(path), "items": used, "left_out": len(items) - len(used), "metrics": metrics,
            "scores": {label: [s[it.id] for it in used] for label, s in scores.items()}}


def step_level_table(sets: dict) -> dict:
    """results.json's "step_level": per set and scorer the numbers BoN/step_eval.py wrote (metrics.json)."""
    out = {}
    for name, d in sets.items():
        m0 = d["metrics"]["DreamPRM"]
        prms = {}
        for label, m in d["metrics"].items():
            o, h = m["overall"], m["threshold_heldout"]
            prms[label] = {"macro_f1": o["macro_f1"], "f1_correct": o["f1_correct"], "f1_incorrect": o["f1_incorrect"],
                           "heldout": {"macro_f1": h["macro_f1"], "thresholds": [x["threshold"] for x in h["halves"]]},
                           "first_error": {k: o["first_error"][k] for k in ("acc_erroneous", "acc_correct", "f1")},
                           "auroc": o["auroc"], "n_solutions": m["n_solutions"],
                           "by_dataset": {k: {"macro_f1": g["macro_f1"], "n_solutions": g["n_solutions"]}
                                          for k, g in m["by_dataset"].items()}}
        out[name] = {"file": d["file"], "n_solutions": m0["n_solutions"], "n_steps": m0["n_steps"],
                     "fully_correct": m0["overall"]["first_error"]["n_correct"], "threshold": m0["threshold"],
                     "left_out": d["left_out"],  # solutions some scorer has no scores for
                     "neutral": m0["neutral"], "prms": prms,
                     "published_overall_macro_f1": m0.get("published_overall_macro_f1")}
    return out


def confusion(scores: list[list[float]], labels: list[list[int]], threshold: float) -> np.ndarray:
    """(solutions, 4): each solution's (tp, fp, fn, tn) of the class "correct" (score >= threshold) over its
    steps labelled 1 or -1. Counts add over solutions, so a resample's macro-F1 is `macro_f1` of a sum."""
    rows = []
    for s, y in zip(scores, labels):
        s, y = np.asarray(s, dtype=float), np.asarray(y)
        ok = s >= threshold
        rows.append([np.sum(ok & (y == 1)), np.sum(ok & (y == -1)), np.sum(~ok & (y == 1)), np.sum(~ok & (y == -1))])
    return np.array(rows, dtype=float).reshape(-1, 4)


def macro_f1(c) -> float:
    """Macro-F1 (%) from summed (tp, fp, fn, tn): dreamprm.stepeval.step_f1's definition (NaN if undefined)."""
    tp, fp, fn, tn = c
    d1, d2 = 2 * tp + fp + fn, 2 * tn + fn + fp
    return 100.0 * (tp / d1 + tn / d2) if d1 and d2 else math.nan


def step_intervals(sets: dict, n_boot: int, seed: int = 0) -> dict:
    """"<A> - <B>" -> {dataset | "pooled": ci} of the macro-F1 difference at each set's threshold, solutions as
    units (every solution of the step sets is a unit; "pooled": all of them)."""
    from ..stats import paired_bootstrap_metric
    from ..stepeval import apply_neutral

    per = defaultdict(list)  # group -> [(label -> confusion row)]
    for d in sets.values():
        m = d["metrics"]["DreamPRM"]
        labels = [apply_neutral(it.labels, m["neutral"]) for it in d["items"]]
        conf = {label: confusion(s, labels, m["threshold"]) for label, s in d["scores"].items()}
        for i, it in enumerate(d["items"]):
            row = {label: c[i] for label, c in conf.items()}
            per[it.dataset].append(row)
            per["pooled"].append(row)
    out = {}
    for a, b in STEP_PAIRS:
        key = f"{a} - {b}"
        for group, rows in per.items():
            if not rows or a not in rows[0] or b not in rows[0]:
                continue
            if group == "pooled" and len(per) == 2:  # one dataset: "pooled" is that dataset
                out[key][group] = dict(next(iter(out[key].values())))
                continue
            ca, cb = (np.array([r[x] for r in rows]) for x in (a, b))
            out.setdefault(key, {})[group] = _ci(paired_bootstrap_metric(
                len(rows), lambda idx: macro_f1(ca[idx].sum(0)), lambda idx: macro_f1(cb[idx].sum(0)),
                n_boot=n_boot, seed=seed))
    return out


def bon_intervals(run: Path, tests: list[str], results: dict, n_boot: int, seed: int = 0) -> dict:
    """"<A> - <B>" -> {benchmark | "pooled": ci} of the BoN accuracy difference (points) at the largest N, from
    each question's pick (bon/<name>/<benchmark>.selected.jsonl; random pick: its expectation per question)."""
    from ..stats import bon_correctness, paired_bon, paired_bootstrap, pooled, random_correctness

    dream = results.get("dreamprm")
    if not dream:
        return {}
    corr = defaultdict(dict)  # benchmark -> label -> id -> 1/0
    for label, name in (("DreamPRM", "dreamprm"), ("Vanilla PRM", "vanilla"), ("ORM", "orm")):
        r = results.get(name)
        for b in tests:
            if r and b in r["benchmarks"] and (run / "bon" / name / f"{b}.selected.jsonl").is_file():
                corr[b][label] = bon_correctness(run / "bon" / name, b)
    for b in tests:
        cands = run / "rollouts" / f"{b}.jsonl"
        if "DreamPRM" in corr[b] and cands.is_file():
            rnd = random_correctness(cands, max(dream["n"]))
            corr[b]["Random pick"] = {i: rnd[i] for i in corr[b]["DreamPRM"] if i in rnd}
    out = {}
    for a, c in BON_PAIRS:
        units = {}
        for b in tests:
            if a in corr[b] and c in corr[b] and b in dream["benchmarks"]:
                x, y, _ = paired_bon(corr[b][a], corr[b][c], dream["benchmarks"][b]["total"], f"{run} {b}: {a} vs {c}")
                units[b] = (x, y)
        if not units:
            continue
        boot = lambda pairs: _ci(paired_bootstrap(*pooled(pairs), n_boot=n_boot, seed=seed, scale=100))  # noqa: E731
        out[f"{a} - {c}"] = {b: boot([u]) for b, u in units.items()} | {"pooled": boot(units.values())}
    return out


def step_score_dists(sets: dict) -> dict:
    """scorer label -> {"correct": [scores], "incorrect": [scores]} over every step set (the figure's input)."""
    out = defaultdict(lambda: {"correct": [], "incorrect": []})
    for d in sets.values():
        for label, per_item in d["scores"].items():
            for it, s in zip(d["items"], per_item):
                for x, y in zip(s, it.labels):
                    if y:
                        out[label]["correct" if y == 1 else "incorrect"].append(float(x))
    return {label: out[label] for label, _ in STEP_RUNS if label in out}


def plot_weights_vs_quality(rows: list[dict], out: Path) -> Path | None:
    from ..plots import _plt

    plt = _plt()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for r in rows:
        ax.scatter(r["quality"], r["weight"], color="tab:red" if r["corruption_rate"] > 0 else "tab:blue")
        ax.annotate(r["name"], (r["quality"], r["weight"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("known domain quality (1 - corruption rate)")
    ax.set_ylabel("learned domain weight")
    ax.set_title("DreamPRM weights vs known quality")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _fmt(v, digits=1):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def build_report(run: Path, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    world = _read_json(run / "world" / "world.json")
    if world is None:
        raise FileNotFoundError(f"{run / 'world' / 'world.json'}: not a mini world run (scripts/demo.sh writes it)")
    weights = _read_json(run / "reweighting" / "domain_weights.json") or {}
    summary = _read_json(run / "reweighting" / "summary.json") or {}
    train = [d for d in world["domains"] if d["role"] == "train"]
    tests = [d["name"] for d in world["domains"] if d["role"] == "test"]
    rows = [{"name": d["name"], "quality": d["quality"], "corruption_rate": d["corruption_rate"],
             "error_type": d["error_type"], "weight": weights.get(d["name"])} for d in train]
    have = [r for r in rows if r["weight"] is not None]
    rho, p = spearman([r["weight"] for r in have], [r["quality"] for r in have]) if len(have) > 2 else (None, None)
    corrupted = [r["weight"] for r in have if r["corruption_rate"] > 0]
    max_corrupted = max(corrupted) if corrupted else None

    results = {n: _read_json(run / "bon" / n / "results.json") for n in RUNS}
    bon, n_used = {}, None
    for b in tests:
        bon[b] = {}
        for label, name, method in METHODS:
            r = results.get(name)
            if not r or b not in r["benchmarks"]:
                bon[b][label] = None
                continue
            acc = r["benchmarks"][b]["accuracy"]
            key = f"prm:{r['aggregation']}" if method == "prm" else method
            n_used = str(max(int(k) for k in acc[key])) if key in acc else n_used
            bon[b][label] = acc.get(key, {}).get(n_used) if key in acc else None
        bon[b]["questions"] = (results.get("dreamprm") or {}).get("benchmarks", {}).get(b, {}).get("total")

    claim1 = rho is not None and rho >= CLAIM_SPEARMAN and max_corrupted is not None and max_corrupted < 1
    claim2 = {b: all(bon[b][k] is not None for k in ("DreamPRM", "Vanilla PRM", "Random pick")) and
              bon[b]["DreamPRM"] > bon[b]["Vanilla PRM"] > bon[b]["Random pick"] for b in tests}

    tracks = Tracks(run / "world" / "policy.json")
    labels = mc_label_table(run, tracks)
    steps = {n: step_score_table(run, n, tests, tracks) for n in ("dreamprm", "vanilla")}
    log = run / "reweighting" / "log.jsonl"
    history = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()] if log.is_file() else []
    figs = run / "figs"
    plot_weights_vs_quality(have, figs / "weights_vs_quality.png") if have else None

    sets = {n: d for n in step_sets(run) if (d := read_step_runs(run, n)) is not None}
    if sets:
        from ..plots import plot_step_scores

        plot_step_scores(step_score_dists(sets), figs / "step_scores.png")
    intervals = {**bon_intervals(run, tests, results, n_boot, seed),
                 "step_macro_f1": step_intervals(sets, n_boot, seed),
                 "about": {"n_boot": n_boot, "level": 0.95, "seed": seed,
                           "threshold": {n: d["metrics"]["DreamPRM"]["threshold"] for n, d in sets.items()},
                           "what": "A - B with a paired bootstrap percentile interval (dreamprm.stats); BoN accuracy "
                                   "in points at the largest N, questions as units; step macro-F1 in points, "
                                   "solutions as units; holds = lo > 0"}}
    claim3 = {"bon": {b: ci["holds"] for b, ci in intervals.get(MAIN_PAIR, {}).items()},
              "step_macro_f1": {g: ci["holds"] for g, ci in intervals["step_macro_f1"].get(MAIN_PAIR, {}).items()}}

    sizes = {k: world.get(k) for k in ("n_train", "n_meta", "n_test", "n_step")}  # n_step: since issue 13
    out = {"run": str(run), "seed": world["seed"], "sizes": sizes,
           "iterations": summary.get("iterations"), "train_samples": summary.get("train_samples"),
           "orm": {k: (_read_json(run / "orm" / "summary.json") or {}).get(k) for k in ("iterations", "train_samples")},
           "meta_records": summary.get("meta_records"), "domains": rows, "spearman": rho, "spearman_p": p,
           "max_corrupted_weight": max_corrupted, "bon_n": n_used, "bon": bon,
           "claims": {"weights_follow_quality": claim1, "dreamprm_gt_vanilla_gt_random": claim2,
                      "dreamprm_beats_vanilla_interval": claim3},
           "mc_labels": labels, "step_scores": steps, "step_level": step_level_table(sets), "intervals": intervals}
    write_json(run / "results.json", out)
    (run / "RESULTS.md").write_text(render(out, history, figs), encoding="utf-8")
    return out


def render(r: dict, history: list[dict], figs: Path) -> str:
    s = r["sizes"]
    L = [f"# DreamPRM on the CPU mini world (seed {r['seed']})", "",
         "Written by `python -m dreamprm.miniworld.report` from the files this run's stages wrote "
         f"(`{r['run']}`). The policy is SIMULATED (`dreamprm/miniworld/simulated.py`), the PRM a tiny Qwen2-VL trained from "
         f"scratch. World: {s['n_train']} questions per train domain, {s['n_meta']} meta questions (4 responses "
         f"each), {s['n_test']} questions per test benchmark (8 candidates each)"
         + (f", {s['n_step']} questions of the step benchmark (one response each)" if s.get("n_step") else "")
         + f". Training: {r['iterations']} "
         f"iterations on {r['train_samples']} train nodes and {r['meta_records']} meta records."
         + (f" ORM (an outcome reward model: the same tiny Qwen2-VL and head, trained on whole-response correctness, "
            f"one sequence per response, every weight 1): {r['orm']['iterations']} iterations on "
            f"{r['orm']['train_samples']} responses of the same train rollouts." if r["orm"]["iterations"] else ""),
         "",
         "## Learned domain weights against the known domain quality", "",
         "| domain | quality | corruption | error type | DreamPRM weight | vanilla |", "|---|---|---|---|---|---|"]
    for d in sorted(r["domains"], key=lambda d: -d["quality"]):
        L.append(f"| {d['name']} | {d['quality']:.2f} | {d['corruption_rate']:.2f} | {d['error_type']} | "
                 f"{_fmt(d['weight'], 3)} | 1.000 |")
    L += ["", f"Spearman correlation of the weights with quality (scipy.stats.spearmanr): "
              f"**{_fmt(r['spearman'], 3)}** (p = {_fmt(r['spearman_p'], 3)}). Largest weight of a corrupted domain: "
              f"**{_fmt(r['max_corrupted_weight'], 3)}** (1 = the vanilla weight).", "",
          "![weights vs quality](figs/weights_vs_quality.png)", "",
          "![domain weights](figs/domain_weights.png) ![over iterations](figs/domain_weights_over_iterations.png)", ""]
    if history:
        L += ["Weights over training (`reweighting/log.jsonl`):", "",
              "| iteration | lower loss | upper loss | " + " | ".join(d["name"] for d in r["domains"]) + " |",
              "|---" * (3 + len(r["domains"])) + "|"]
        step = max(1, len(history) // 8)
        for h in history[step - 1::step] if history[-1] in history[step - 1::step] else history[step - 1::step] + [history[-1]]:
            L.append(f"| {h['iteration']} | {_fmt(h['lower_loss'], 4)} | {_fmt(h['upper_loss'], 4)} | "
                     + " | ".join(_fmt(h["weights"].get(d["name"]), 3) for d in r["domains"]) + " |")
        L.append("")
    L += [f"## Best-of-{r['bon_n']} accuracy (%) on the test benchmarks", "",
          "From `bon/dreamprm/results.json`, `bon/vanilla/results.json` and `bon/orm/results.json` (BoN/pick.py). "
          "ORM: the trained ORM's score of each whole candidate; the ORM proxy is DreamPRM's score of the last step "
          "prefix alone, an ablation. Random pick is its expectation; the baselines do not depend on the PRM.", "",
          "| method | " + " | ".join(r["bon"]) + " |", "|---" * (1 + len(r["bon"])) + "|"]
    for label, _, _ in METHODS:
        L.append(f"| {label} | " + " | ".join(_fmt(r["bon"][b][label]) for b in r["bon"]) + " |")
    L.append("| questions | " + " | ".join(str(r["bon"][b]["questions"]) for b in r["bon"]) + " |")
    L += ["", "![BoN scaling](figs/bon_scaling.png)", ""]
    L += render_step_level(r) + render_intervals(r)
    L += ["## The claims", ""]
    c = r["claims"]
    L.append(f"1. Weights follow quality (Spearman >= {CLAIM_SPEARMAN} and every corrupted domain below 1): "
             f"**{'holds' if c['weights_follow_quality'] else 'does not hold'}** in this run.")
    L.append("2. BoN accuracy DreamPRM > vanilla PRM > random pick (point estimates): " + ", ".join(
        f"{b} **{'holds' if v else 'does not hold'}**" for b, v in c["dreamprm_gt_vanilla_gt_random"].items())
        + " in this run. One seed is one draw: `benchmarks/world_claims.py` runs three.")
    c3 = c["dreamprm_beats_vanilla_interval"]
    def said(v: dict) -> str:
        v = {k: ok for k, ok in v.items() if not (k == "pooled" and len(v) == 2)}  # one group: it is the pool
        return ", ".join(f"{k} **holds**" if ok else f"{k} **not shown** (its interval is not above 0)"
                         for k, ok in v.items())

    L.append("3. DreamPRM beats the vanilla PRM in BoN accuracy, the 95% interval of the difference above 0: "
             + (said(c3["bon"]) if c3["bon"] else "no per-question picks to test it") + ".")
    L.append("4. DreamPRM beats the vanilla PRM in step macro-F1 (threshold 0.5), the 95% interval above 0: "
             + (said(c3["step_macro_f1"]) if c3["step_macro_f1"] else "no step-level scores to test it") + ".")
    L += ["", "## Why: the MC labels and the PRMs' step scores", "",
          "Mean MC label of tree nodes (`mc/estimate.jsonl`) whose prefix is on the right or on the wrong track "
          "(read from the step values by the SIMULATED policy), on clean and on corrupted questions. On a "
          "corrupted question the labels are inverted: the wrong track reaches the (wrong) ground truth.", "",
          "| domain | right, clean | wrong, clean | right, corrupted | wrong, corrupted | all |", "|---" * 6 + "|"]
    for d in r["domains"]:
        m = r["mc_labels"].get(d["name"], {})
        cell = lambda k: f"{_fmt(m[k]['mean'], 2)} ({m[k]['n']})" if k in m else "—"  # noqa: E731
        L.append(f"| {d['name']} | {cell('right/clean')} | {cell('wrong/clean')} | {cell('right/corrupted')} | "
                 f"{cell('wrong/corrupted')} | {cell('all/all')} |")
    L += ["", "Mean PRM score of the test candidates' step prefixes on the right and wrong track "
              "(`bon/<name>/<benchmark>.scores.jsonl`), by the kind of question; a useful PRM scores the wrong "
              "track lower.", "",
          "| question kind | DreamPRM right | DreamPRM wrong | vanilla right | vanilla wrong |", "|---" * 5 + "|"]
    kinds = [d["name"] for d in r["domains"]] + ["all"]
    for k in kinds:
        cells = []
        for n in ("dreamprm", "vanilla"):
            for t in ("right", "wrong"):
                v = r["step_scores"].get(n, {}).get(k, {}).get(t)
                cells.append(_fmt(v["mean"], 3) if v else "—")
        L.append(f"| {k} | " + " | ".join(cells) + " |")
    L.append("")
    return "\n".join(L)


def random_macro_f1(n_correct: int, n_incorrect: int) -> float | None:
    """The macro-F1 (%) a uniform random scorer is expected to reach at threshold 0.5, to first order: half the
    steps predicted correct whatever their label, so F1(correct) = p / (p + 1/2) and F1(incorrect) =
    (1 - p) / (3/2 - p), p the share of correct steps. 50 for balanced labels, a little below otherwise."""
    n = n_correct + n_incorrect
    if not n:
        return None
    p = n_correct / n
    return 50.0 * (p / (p + 0.5) + (1 - p) / (1.5 - p))


def render_step_level(r: dict) -> list[str]:
    L = []
    for name, d in r["step_level"].items():
        n = d["n_steps"]
        L += [f"## Step-level evaluation on `{name}` (the world's VisualProcessBench)", "",
              f"{d['n_solutions']} solutions (`{Path(d['file']).name}`: one SIMULATED response to each held-out "
              f"question, none trained or selected on), {d['fully_correct']} of them fully correct; {n['correct']} "
              f"correct and {n['incorrect']} incorrect steps, {n['neutral']} neutral. The world labels every step: "
              "-1 when the values it states leave the right track (the first error and every step after it), 1 "
              "otherwise, whatever its wording (`python -m dreamprm.miniworld.world steps`). Scores and metrics from "
              "`stepeval/<name>/` (BoN/step_eval.py, the scorer best-of-N uses). A step is predicted correct when "
              f"its score >= {d['threshold']:g}; macro-F1 = the mean of the F1 of the correct and of the incorrect "
              "class over all steps (VisualProcessBench's metric); held-out: the threshold that maximises macro-F1 "
              "on one half of the solutions (a seeded hash of the id), reported on the other half, both ways and "
              "averaged; first error (ProcessBench): the earliest step scored below the threshold against the "
              "earliest step labelled -1, accuracy on erroneous and on fully correct solutions and their harmonic "
              "mean; AUROC: correct against incorrect steps.", "",
              "| scorer | macro-F1 | F1 correct | F1 incorrect | macro-F1, held-out threshold (thresholds) | "
              "first error: erroneous | fully correct | harmonic mean | AUROC |", "|---" * 9 + "|"]
        for label, m in d["prms"].items():
            h, fe = m["heldout"], m["first_error"]
            L.append(f"| {label} | {_fmt(m['macro_f1'])} | {_fmt(m['f1_correct'])} | {_fmt(m['f1_incorrect'])} | "
                     f"{_fmt(h['macro_f1'])} ({' / '.join(f'{t:.2f}' for t in h['thresholds'])}) | "
                     f"{_fmt(fe['acc_erroneous'])} | {_fmt(fe['acc_correct'])} | {_fmt(fe['f1'])} | "
                     f"{_fmt(m['auroc'], 3)} |")
        exp = random_macro_f1(n["correct"], n["incorrect"])
        L += ["", f"Random is the seeded uniform scorer (`--prm random`): its expected macro-F1 on these labels is "
                  f"{_fmt(exp)} (50 with balanced labels). For scale only, the published overall macro-F1 on "
                  "VisualProcessBench, a different and harder benchmark: " + ", ".join(
                      f"{k} {v:.1f}" for k, v in (d.get("published_overall_macro_f1") or {}).items()) + ".", "",
              "![step scores](figs/step_scores.png)", ""]
        if d.get("left_out"):
            L += [f"{d['left_out']} solutions left out: some scorer has no scores (one per step) for them.", ""]
    return L


def render_intervals(r: dict) -> list[str]:
    iv = r["intervals"]
    bon = {k: v for k, v in iv.items() if k not in ("step_macro_f1", "about")}
    if not bon and not iv["step_macro_f1"]:
        return []
    a = iv["about"]
    def cell(ci: dict) -> str:
        return f"{ci['diff']:+.1f} [{ci['lo']:+.1f}, {ci['hi']:+.1f}]" + (" ✓" if ci["holds"] else "")

    L = ["## The differences with 95% intervals", "",
         f"A - B with a paired bootstrap interval (`dreamprm.stats`, {a['n_boot']} resamples, the 2.5 and 97.5 "
         "percentiles): the units are resampled with the same indices for both systems. ✓: the interval excludes "
         "0, so \"A better than B\" holds; otherwise it is not shown by this run. The interval covers the sampling "
         "of the questions (or solutions), not the training seed (`benchmarks/world_claims.py` runs several)."]
    if bon:
        first = next(iter(bon.values()))
        benches = list(first)
        L += ["", f"BoN accuracy at N = {r['bon_n']}, percentage points; the units are the questions (each pick "
                  "right or wrong, `bon/<name>/<benchmark>.selected.jsonl`; random pick: its expectation), "
                  "pooled: the questions of both benchmarks.", "",
              "| A - B | " + " | ".join(f"{b} ({first[b]['n']} questions)" for b in benches) + " |",
              "|---" * (1 + len(benches)) + "|"]
        for k, v in bon.items():
            L.append(f"| {k} | " + " | ".join(cell(v[b]) if b in v else "—" for b in benches) + " |")
    if iv["step_macro_f1"]:
        first = next(iter(iv["step_macro_f1"].values()))
        if len(first) == 2:  # one dataset: its column is the pooled one
            first = {g: ci for g, ci in first.items() if g != "pooled"}
        L += ["", "Step macro-F1 at the threshold, points; the units are the solutions of the step set (one per "
                  "question, so independent).", "",
              "| A - B | " + " | ".join(f"{g} ({ci['n']} solutions)" for g, ci in first.items()) + " |",
              "|---" * (1 + len(first)) + "|"]
        for k, v in iv["step_macro_f1"].items():
            L.append(f"| {k} | " + " | ".join(cell(v[g]) if g in v else "—" for g in first) + " |")
    L.append("")
    return L


@dataclass
class ReportArgs(StageArgs):
    """Write <run>/RESULTS.md and <run>/results.json from a mini world run's files (scripts/demo.sh)."""
    run: str = field(default="runs/demo", metadata={"help": "the demo's output directory"})
    n_boot: int = field(default=N_BOOT, metadata={"help": "bootstrap resamples per interval"})
    bootstrap_seed: int = field(default=0, metadata={"help": "seed of the bootstrap's resamples"})


def main(argv=None) -> dict:
    cfg = parse_args(ReportArgs, argv)
    run = cfg.resolve(cfg.run)
    r = build_report(run, cfg.n_boot, cfg.bootstrap_seed)
    print(f"wrote {run / 'RESULTS.md'} and {run / 'results.json'}")
    print("  weights: " + ", ".join(f"{d['name']} {_fmt(d['weight'], 3)}" for d in r["domains"]))
    print(f"  Spearman(weights, quality) {_fmt(r['spearman'], 3)}; max corrupted weight "
          f"{_fmt(r['max_corrupted_weight'], 3)}")
    for b, v in r["bon"].items():
        print(f"  {b}: DreamPRM {_fmt(v['DreamPRM'])}, vanilla {_fmt(v['Vanilla PRM'])}, ORM {_fmt(v['ORM'])}, "
              f"self-consistency {_fmt(v['Self-consistency'])}, random {_fmt(v['Random pick'])}, "
              f"oracle {_fmt(v['Oracle (pass@N)'])}")
    for name, d in r["step_level"].items():
        print(f"  step level ({name}, {d['n_solutions']} solutions): macro-F1 " + ", ".join(
            f"{k} {_fmt(m['macro_f1'])}" for k, m in d["prms"].items()))
    for k, v in r["intervals"].items():
        if k not in ("step_macro_f1", "about"):
            print(f"  BoN {k}: " + ", ".join(f"{b} {ci['diff']:+.1f} [{ci['lo']:+.1f}, {ci['hi']:+.1f}]"
                                             for b, ci in v.items()))
    for k, v in r["intervals"]["step_macro_f1"].items():
        print(f"  step macro-F1 {k}: " + ", ".join(f"{g} {ci['diff']:+.1f} [{ci['lo']:+.1f}, {ci['hi']:+.1f}]"
                                                  for g, ci in v.items()))
    print(f"  claims: {r['claims']}")
    return r


if __name__ == "__main__":
    main()
