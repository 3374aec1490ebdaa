"""The results page of a CPU mini world run (scripts/demo.sh): RESULTS.md and results.json, from the run's files.

    python -m dreamprm.world_report --path . --run runs/demo

Reads only what the stages wrote under --run:

    world/world.json, world/policy.json      the domains' known quality; the SIMULATED policy's right track
    mc/estimate.jsonl                        MC labels per domain, on the right and on the wrong track
    reweighting/{domain_weights.json, log.jsonl, summary.json}, vanilla/summary.json, orm/summary.json
    bon/<name>/results.json                  BoN accuracy per benchmark and method (BoN/pick.py; name: dreamprm,
                                             vanilla, orm = the trained ORM, one score per response)
    bon/<name>/<benchmark>.scores.jsonl, rollouts/<benchmark>.jsonl   the PRMs' step scores, clean vs erroneous

and writes <run>/RESULTS.md (tables and the figures in <run>/figs) and <run>/results.json (every number on the
page, for benchmarks/world_claims.py). Every number comes from those files; nothing is tuned or re-run here.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .cli import StageArgs, parse_args
from .io import read_records, write_json
from .steps import step_prefixes

# (label, BoN run, method); the ORM is the trained one (bon/orm, scored per response), the proxy an ablation
METHODS = (("DreamPRM", "dreamprm", "prm"), ("Vanilla PRM", "vanilla", "prm"), ("ORM", "orm", "orm"),
           ("ORM proxy: DreamPRM last-step score (ablation)", "dreamprm", "prm:last"),
           ("Self-consistency", "dreamprm", "self_consistency"), ("Random pick", "dreamprm", "random"),
           ("Base model (one sample)", "dreamprm", "base"), ("Oracle (pass@N)", "dreamprm", "oracle"))
RUNS = ("dreamprm", "vanilla", "orm")
CLAIM_SPEARMAN = 0.8


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


def plot_weights_vs_quality(rows: list[dict], out: Path) -> Path | None:
    from .plots import _plt

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


def build_report(run: Path) -> dict:
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

    out = {"run": str(run), "seed": world["seed"], "sizes": {k: world[k] for k in ("n_train", "n_meta", "n_test")},
           "iterations": summary.get("iterations"), "train_samples": summary.get("train_samples"),
           "orm": {k: (_read_json(run / "orm" / "summary.json") or {}).get(k) for k in ("iterations", "train_samples")},
           "meta_records": summary.get("meta_records"), "domains": rows, "spearman": rho, "spearman_p": p,
           "max_corrupted_weight": max_corrupted, "bon_n": n_used, "bon": bon,
           "claims": {"weights_follow_quality": claim1, "dreamprm_gt_vanilla_gt_random": claim2},
           "mc_labels": labels, "step_scores": steps}
    write_json(run / "results.json", out)
    (run / "RESULTS.md").write_text(render(out, history, figs), encoding="utf-8")
    return out


def render(r: dict, history: list[dict], figs: Path) -> str:
    s = r["sizes"]
    L = [f"# DreamPRM on the CPU mini world (seed {r['seed']})", "",
         "Written by `python -m dreamprm.world_report` from the files this run's stages wrote "
         f"(`{r['run']}`). The policy is SIMULATED (`dreamprm/simulated.py`), the PRM a tiny Qwen2-VL trained from "
         f"scratch. World: {s['n_train']} questions per train domain, {s['n_meta']} meta questions (4 responses "
         f"each), {s['n_test']} questions per test benchmark (8 candidates each). Training: {r['iterations']} "
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
    L += ["", "![BoN scaling](figs/bon_scaling.png)", "", "## The claims", ""]
    c = r["claims"]
    L.append(f"1. Weights follow quality (Spearman >= {CLAIM_SPEARMAN} and every corrupted domain below 1): "
             f"**{'holds' if c['weights_follow_quality'] else 'does not hold'}** in this run.")
    L.append("2. BoN accuracy DreamPRM > vanilla PRM > random pick: " + ", ".join(
        f"{b} **{'holds' if v else 'does not hold'}**" for b, v in c["dreamprm_gt_vanilla_gt_random"].items())
        + " in this run. One seed is one draw: `benchmarks/world_claims.py` runs three.")
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


@dataclass
class ReportArgs(StageArgs):
    """Write <run>/RESULTS.md and <run>/results.json from a mini world run's files (scripts/demo.sh)."""
    run: str = field(default="runs/demo", metadata={"help": "the demo's output directory"})


def main(argv=None) -> dict:
    cfg = parse_args(ReportArgs, argv)
    run = cfg.resolve(cfg.run)
    r = build_report(run)
    print(f"wrote {run / 'RESULTS.md'} and {run / 'results.json'}")
    print("  weights: " + ", ".join(f"{d['name']} {_fmt(d['weight'], 3)}" for d in r["domains"]))
    print(f"  Spearman(weights, quality) {_fmt(r['spearman'], 3)}; max corrupted weight "
          f"{_fmt(r['max_corrupted_weight'], 3)}")
    for b, v in r["bon"].items():
        print(f"  {b}: DreamPRM {_fmt(v['DreamPRM'])}, vanilla {_fmt(v['Vanilla PRM'])}, ORM {_fmt(v['ORM'])}, "
              f"self-consistency {_fmt(v['Self-consistency'])}, random {_fmt(v['Random pick'])}, "
              f"oracle {_fmt(v['Oracle (pass@N)'])}")
    print(f"  claims: {r['claims']}")
    return r


if __name__ == "__main__":
    main()
