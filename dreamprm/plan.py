"""Planning a run before it spends GPU-days: the work of each generation stage, its GPU-hours, and the bi-level
run's memory per strategy.

    python -m dreamprm.plan --path . --pilot_rollouts runs/rollouts/mmpr.jsonl --pilot_estimate runs/mc/estimate.jsonl \
        --tokenizer models/policy --questions_per_domain 1000 --tokens_per_second 2500

Generations and tokens per stage come from the scale (domains, questions, N) and a pilot run: its responses' mean
length, its tree nodes per response, and its nodes' accuracy distribution, which sets how many rollouts the MC rule
draws, and the length of its completions (measured, or else the rest of each node's own response). Parameter counts and memory come from the models'
configs (shipped in dreamprm/configs for the default models, since there is no hub here), built on the meta device.

The MC rule's expected rollouts:

A tree node starts at times = 1 with its response's verdict; the paper rule (`mc.paper_rule`) then draws
`min - 1` more rollouts, and runs on to `max` once the node's score is mixed (some right, some wrong). With p the
chance that a completion from the node's prefix is right, and the verdict drawn like a completion:

    E[new rollouts | p] = (min - 1) + (max - min) * (1 - p^min - (1 - p)^min)

The distribution of p over nodes comes from a pilot run's `estimate.jsonl` (score, times per node). Plugging in
each node's accuracy is biased (a mixed node ran to `max`, but its accuracy predicts fewer), so p's distribution
is fitted instead: a nonparametric maximum-likelihood estimate on a grid (EM). The stopping rule looks only at the
outcomes, so the likelihood of a node is the binomial one, p^score (1 - p)^(times - score).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cli import StageArgs, parse_args
from .io import DataError, read_records, write_json
from .shards import read_marker

GRID = np.linspace(0.0, 1.0, 101)


def new_rollouts(p, lo: int = 4, hi: int = 16, rule: str = "paper"):
    """Expected rollouts a node draws after its response's verdict (`mc.RULES`), for p in [0, 1] (array ok)."""
    p = np.asarray(p, dtype=float)
    if rule == "fixed":
        return np.full_like(p, max(lo - 1, 0))
    if rule != "paper":
        raise ValueError(f"unknown rule {rule!r}; choose paper or fixed")
    lo = max(lo, 1)
    mixed = 1.0 - p ** lo - (1.0 - p) ** lo if lo > 1 else np.zeros_like(p)
    return (lo - 1) + (hi - lo) * mixed


def _likelihood(scores, times, grid: np.ndarray = GRID) -> np.ndarray:
    """[nodes, grid] binomial likelihood of each node's (score, times) at each p, scaled to a row maximum of 1."""
    s, t = np.asarray(scores, dtype=float)[:, None], np.asarray(times, dtype=float)[:, None]
    if not len(s) or (t < 1).any() or (s < 0).any() or (s > t).any():
        raise ValueError("need at least one node with 0 <= score <= times and times >= 1")
    with np.errstate(divide="ignore", invalid="ignore"):
        loglik = s * np.log(grid) + (t - s) * np.log1p(-grid)
    loglik = np.where(np.isnan(loglik), 0.0, loglik)  # 0 * log 0 is 0
    return np.exp(loglik - loglik.max(axis=1, keepdims=True))


def _posterior(lik: np.ndarray, w: np.ndarray) -> np.ndarray:
    post = lik * w
    return post / post.sum(axis=1, keepdims=True)


def fit_p(scores, times, grid: np.ndarray = GRID, iterations: int = 500) -> np.ndarray:
    """Mixing weights over `grid` of the nodes' success probability, from their (score, times) counts (EM for
    the nonparametric maximum-likelihood estimate)."""
    lik = _likelihood(scores, times, grid)
    w = np.full(len(grid), 1.0 / len(grid))
    for _ in range(iterations):
        w = _posterior(lik, w).mean(axis=0)
    return w


def expected_rollouts(scores, times, lo: int = 4, hi: int = 16, rule: str = "paper") -> float:
    """Mean new rollouts per node that the rule draws for nodes like the pilot's (fitted p distribution)."""
    w = fit_p(scores, times)
    return float((w * new_rollouts(GRID, lo, hi, rule)).sum())


def posterior_rollouts(scores, times, lo: int = 4, hi: int = 16, rule: str = "paper") -> np.ndarray:
    """Each pilot node's expected new rollouts under p's fitted distribution given its own counts (their mean is
    `expected_rollouts`): lets the planner weight each node's completion length by how often it is rolled out."""
    post = _posterior(_likelihood(scores, times), fit_p(scores, times))
    return post @ new_rollouts(GRID, lo, hi, rule)


# --- the planner's command line --------------------------------------------------------------------------------

CONFIGS = Path(__file__).with_name("configs")  # the real models' config.json (no weights): hub id -> file
KNOWN = {"Qwen/Qwen2-VL-2B-Instruct": "qwen2-vl-2b-instruct.json",
         "OpenGVLab/InternVL2_5-8B-MPO-hf": "internvl2_5-8b-mpo-hf.json",
         "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b-instruct.json", "OpenGVLab/InternVL3-1B-hf": "internvl3-1b-hf.json"}
# Test questions of the five benchmarks (the splits dataset/ prepares): WeMath testmini, MathVista testmini,
# MathVision test, MMVet v1, MMStar.
BENCHMARKS = "wemath:1740,mathvista:1000,mathvision:3040,mmvet:218,mmstar:1500"
STRATEGIES = ("default", "distributed", "zero", "fsdp")


@dataclass
class PlanArgs(StageArgs):
    """The expected work of each generation stage at a given scale, its GPU-hours, and the bi-level run's memory
    per strategy, before any GPU time is spent. A pilot run's files (--pilot_rollouts, --pilot_estimate) supply
    the response lengths, steps per response and the nodes' accuracy distribution."""
    domains: int = field(default=15, metadata={"help": "training domains"})
    questions_per_domain: int = field(default=1000, metadata={"help": "training questions per domain"})
    train_responses: int = field(default=1, metadata={"help": "policy responses per training question"})
    meta_questions: int = field(default=1000, metadata={"help": "meta questions (4 responses each by default)"})
    meta_responses: int = field(default=4, metadata={"help": "policy responses per meta question"})
    benchmarks: str = field(default=BENCHMARKS, metadata={"help": "name:questions,... of the best-of-N benchmarks"})
    n: int = field(default=8, metadata={"help": "best-of-N candidates per benchmark question"})
    min_rollouts: int = field(default=4, metadata={"help": "MC rule's minimum rollouts per node"})
    max_rollouts: int = field(default=16, metadata={"help": "MC rule's cap"})
    rule: str = field(default="paper", metadata={"help": "MC rule: paper or fixed"})
    accuracy: float = field(default=0.7, metadata={"help": "without --pilot_estimate: every node's chance that a "
                                                           "completion is right"})
    steps: float = field(default=5.0, metadata={"help": "without --pilot_estimate: tree nodes per response"})
    response_tokens: float = field(default=400.0, metadata={"help": "without --pilot_rollouts: tokens per response"})
    pilot_rollouts: str | None = field(default=None, metadata={
        "help": "a pilot's rollouts JSONL (response lengths; with --pilot_estimate, the completions' lengths)"})
    pilot_estimate: str | None = field(default=None, metadata={
        "help": "a pilot's MC estimate.jsonl (nodes per response, the fitted accuracy distribution)"})
    tokenizer: str | None = field(default=None, metadata={
        "help": "the policy's tokenizer (local directory) to count the pilot's tokens; else --chars_per_token"})
    chars_per_token: float = field(default=3.5, metadata={"help": "characters per token without --tokenizer"})
    tokens_per_second: float = field(default=2500.0, metadata={
        "help": "generated tokens per second per GPU (measure yours: vLLM's throughput with your batch sizes)"})
    prm: str = field(default="Qwen/Qwen2-VL-2B-Instruct", metadata={
        "help": "the PRM: a known hub id (configs shipped in dreamprm/configs) or a directory with config.json"})
    policy: str = field(default="OpenGVLab/InternVL2_5-8B-MPO-hf", metadata={"help": "the policy, as --prm"})
    precision: str = field(default="bf16", metadata={
        "help": "bi-level training: bf16 (the released code: bf16 weights, gradients and Adam states) or fp32"})
    seq_len: int = field(default=2048, metadata={"help": "tokens per PRM training sequence (image tokens included)"})
    batch_size: int = field(default=1, metadata={"help": "global PRM batch (the paper: 1)"})
    world_size: int = field(default=8, metadata={"help": "GPUs of a multi-GPU bi-level run"})
    checkpointing: bool = field(default=False, metadata={"help": "activation (gradient) checkpointing"})
    json_out: str | None = field(default=None, metadata={"help": "also write the plan as JSON here"})


def load_config(name: str):
    """A model's config without its weights: shipped for the known hub ids, else <dir>/config.json."""
    from transformers import AutoConfig

    path = CONFIGS / KNOWN[name] if name in KNOWN else Path(name) / "config.json"
    if not path.is_file():
        raise DataError(f"{name}: no config.json there and not one of the shipped configs ({', '.join(KNOWN)})")
    d = json.loads(path.read_text())
    return AutoConfig.for_model(d.pop("model_type"), **{k: v for k, v in d.items() if not k.startswith("_")})


def parameters(config) -> int:
    """Parameter count of the model a config describes, built on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    auto = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    return sum(p.numel() for p in model.parameters())


def activation_bytes(config, tokens: int, checkpointing: bool, wbytes: int) -> float:
    """Activations kept for the backward pass of one sequence: per transformer layer about 34 * s * h bytes at
    16-bit without recomputation (Korthikanti et al. 2022, attention scores not stored, as with SDPA/flash), 2 * s *
    h with full checkpointing; scaled by wbytes / 2 for fp32. The vision tower is counted the same way over its
    patches (its share of `tokens` is left to --seq_len)."""
    text = getattr(config, "text_config", config)
    per = 2 if checkpointing else 34
    total = per * tokens * text.hidden_size * text.num_hidden_layers
    return total * wbytes / 2


def memory(config, n_params: int, args: PlanArgs) -> dict:
    """Bytes per GPU of the bi-level run for each strategy: parameters, gradients, Adam's two states, darts'
    extra gradient-sized buffer (the upper gradient, kept while the lower parameters are perturbed), and the
    activations of the per-rank batch."""
    wbytes = 2 if args.precision == "bf16" else 4
    p, g, opt, darts = n_params * wbytes, n_params * wbytes, 2 * n_params * wbytes, n_params * wbytes
    out = {}
    for strategy in STRATEGIES:
        ranks = 1 if strategy == "default" else args.world_size
        per_rank_batch = max(1, -(-args.batch_size // ranks))
        act = per_rank_batch * activation_bytes(config, args.seq_len, args.checkpointing, wbytes)
        shard = {"default": (1, 1, 1), "distributed": (1, 1, 1), "zero": (1, 1, ranks),
                 "fsdp": (ranks, ranks, ranks)}[strategy]
        parts = {"parameters": p / shard[0], "gradients": g / shard[1], "optimizer": opt / shard[2],
                 "darts buffer": darts / shard[1], "activations": act}
        if strategy == "distributed":
            parts["DDP buckets"] = g  # gradients are copied into the all-reduce buckets
        out[strategy] = {"ranks": ranks, "per_rank_batch": per_rank_batch, **parts, "total": sum(parts.values())}
    return out


def _tokens(texts: list[str], args: PlanArgs) -> list[float]:
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(Path(args.resolve(args.tokenizer))))
        return [float(len(ids)) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    return [len(t) / args.chars_per_token for t in texts]


def pilot(args: PlanArgs) -> dict:
    """What a pilot run says per response and per node; the flags' values where it says nothing.

    A completion's length: the pilot's own completions when its estimate.jsonl.done counted them (characters,
    turned into tokens at the pilot responses' tokens per character); else the rest of the node's own response
    after its prefix (a completion is a draw like it, though from another prompt), weighted by each node's
    expected rollouts; else half a response."""
    out = {"response_tokens": args.response_tokens, "nodes_per_response": args.steps,
           "rollouts_per_node": float(new_rollouts(args.accuracy, args.min_rollouts, args.max_rollouts, args.rule)),
           "completion_tokens": args.response_tokens / 2, "source": "flags"}
    responses, tokens_per_char = {}, 1 / args.chars_per_token
    if args.pilot_rollouts:
        rows = read_records(args.resolve(args.pilot_rollouts), required=("id", "response"))
        for r in rows:
            responses[(r["id"], r.get("sample", 0))] = r["response"]
        lengths = _tokens([r["response"] for r in rows], args)
        tokens_per_char = sum(lengths) / max(1, sum(len(r["response"]) for r in rows))
        out |= {"response_tokens": float(np.mean(lengths)), "completion_tokens": float(np.mean(lengths)) / 2,
                "source": "pilot"}
    if args.pilot_estimate:
        src = args.resolve(args.pilot_estimate)
        nodes = read_records(src, required=("id", "sid", "add", "score", "times"))
        per_node = posterior_rollouts([x["score"] for x in nodes], [x["times"] for x in nodes],
                                      args.min_rollouts, args.max_rollouts, args.rule)
        n_responses = len({(x["id"], x.get("sample", 0)) for x in nodes})
        out |= {"nodes_per_response": len(nodes) / n_responses, "rollouts_per_node": float(per_node.mean()),
                "source": "pilot"}
        generated = read_marker(src).get("generated in this run", {})
        if generated.get("completions"):
            out["completion_tokens"] = generated["completion_chars"] / generated["completions"] * tokens_per_char
            out["completion_source"] = "the pilot's completions"
        elif responses:
            suffixes = [responses.get((x["id"], x.get("sample", 0)), "")[len(x["add"]):] for x in nodes]
            lengths = np.asarray(_tokens(suffixes, args))
            out["completion_tokens"] = float((lengths * per_node).sum() / per_node.sum())
            out["completion_source"] = "the responses' suffixes"
    return out


def plan(args: PlanArgs) -> dict:
    if args.tokens_per_second <= 0:
        raise DataError(f"--tokens_per_second must be positive, got {args.tokens_per_second}")
    try:
        benches = {b.split(":")[0]: int(b.split(":")[1]) for b in args.benchmarks.split(",") if b.strip()}
    except (IndexError, ValueError):
        raise DataError(f"--benchmarks must be name:questions,..., got {args.benchmarks!r}") from None
    pl = pilot(args)
    train_q = args.domains * args.questions_per_domain
    responses = train_q * args.train_responses
    nodes = responses * pl["nodes_per_response"]
    stages = {
        "train rollouts": (responses, pl["response_tokens"]),
        "MC estimation": (nodes * pl["rollouts_per_node"], pl["completion_tokens"]),
        "meta rollouts": (args.meta_questions * args.meta_responses, pl["response_tokens"]),
        **{f"BoN rollouts {b}": (q * args.n, pl["response_tokens"]) for b, q in benches.items()},
    }
    rows = {name: {"generations": g, "tokens": g * t, "gpu_hours": g * t / args.tokens_per_second / 3600}
            for name, (g, t) in stages.items()}
    models = {}
    for role, name in (("prm", args.prm), ("policy", args.policy)):
        config = load_config(name)
        n_params = parameters(config)
        models[role] = {"name": name, "parameters": n_params}
        if role == "prm":
            models[role]["memory"] = memory(config, n_params, args)
    return {"pilot": pl, "tree_nodes": nodes, "stages": rows, "models": models}


def report(result: dict, args: PlanArgs) -> str:
    pl = result["pilot"]
    lines = [f"per response ({pl['source']}): {pl['response_tokens']:.0f} tokens, {pl['nodes_per_response']:.2f} tree "
             f"nodes; per node {pl['rollouts_per_node']:.2f} new rollouts of {pl['completion_tokens']:.0f} tokens",
             f"{'stage':<24} {'generations':>14} {'tokens':>16} {'GPU-hours':>10}"]
    for name, r in result["stages"].items():
        lines.append(f"{name:<24} {r['generations']:>14,.0f} {r['tokens']:>16,.0f} {r['gpu_hours']:>10.1f}")
    total = {k: sum(r[k] for r in result["stages"].values()) for k in ("generations", "tokens", "gpu_hours")}
    lines.append(f"{'total':<24} {total['generations']:>14,.0f} {total['tokens']:>16,.0f} {total['gpu_hours']:>10.1f}"
                 f"   (at {args.tokens_per_second:g} generated tokens/s per GPU)")
    for role, m in result["models"].items():
        lines.append(f"{role}: {m['name']}, {m['parameters'] / 1e9:.3f}B parameters")
    mem = result["models"]["prm"]["memory"]
    lines.append(f"bi-level run memory per GPU, GiB ({args.precision}, {args.seq_len} tokens per sequence, global "
                 f"batch {args.batch_size}{', checkpointing' if args.checkpointing else ''}):")
    keys = ["parameters", "gradients", "optimizer", "darts buffer", "DDP buckets", "activations", "total"]
    lines.append(f"{'strategy':<12} {'ranks':>5} {'batch/rank':>10} " + " ".join(f"{k:>12}" for k in keys))
    for s, m in mem.items():
        lines.append(f"{s:<12} {m['ranks']:>5} {m['per_rank_batch']:>10} "
                     + " ".join(f"{m.get(k, 0) / 2**30:>12.2f}" for k in keys))
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(PlanArgs, argv)
    result = plan(args)
    print(report(result, args))
    if args.json_out:
        write_json(args.resolve(args.json_out), result)
    return result


if __name__ == "__main__":
    main()
