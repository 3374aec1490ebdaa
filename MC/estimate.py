"""Stage 4: Monte Carlo estimation. Roll every tree node's prefix out with the policy, judge each completion's
final answer, and label the node with the fraction that reach the right answer.

    python MC/estimate.py --path . [--tree runs/mc/tree.jsonl] [--out runs/mc/estimate.jsonl] [--shard 0/4] [--resume]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from dreamprm import shards
from dreamprm.cli import parse_args
from dreamprm.domains import canonical
from dreamprm.io import AppendWriter, DataError, lock_output, read_records, where
from dreamprm.mc import RULES, MCSettings, estimate, node_key, read_nodes
from dreamprm.rollout import GenerationArgs
from dreamprm.selection import histogram


@dataclass
class EstimateArgs(GenerationArgs):
    """Batched MC estimation over many tree nodes at once; each node is appended to --out when finished."""
    tree: str = field(default="runs/mc/tree.jsonl", metadata={"help": "tree nodes from MC/tree.py"})
    out: str = field(default="runs/mc/estimate.jsonl", metadata={
        "help": "labelled nodes (JSONL; shards write <stem>.shard-i-of-n.jsonl)"})
    min_rollouts: int = field(default=4, metadata={
        "help": "minimum rollouts per node, counting the original response (the paper: 4)"})
    max_rollouts: int = field(default=16, metadata={
        "help": "cap on rollouts per node; under the paper's rule every node with mixed outcomes runs to it"})
    rule: str = field(default="paper", metadata={
        "help": f"expansion rule: {', '.join(RULES)} (paper: continue while 0 < accuracy < 1 or times < min)"})
    pool: int = field(default=64, metadata={"help": "unfinished nodes in flight; their rollouts share backend calls"})
    min_completion_chars: int = field(default=30, metadata={
        "help": "a completion of this many characters or fewer is discarded and redrawn, except at a "
                "response's last step (the original's rule); 0 turns it off"})
    max_redraws: int = field(default=4, metadata={
        "help": "redraws per rollout of a too-short completion; the draw after the last one counts"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N nodes (smoke runs)"})


def run(cfg: EstimateArgs, backend=None, judge=None, progress=True) -> dict:
    cfg.check_generation()  # the settings first: each error one line, before anything is read or loaded
    cfg.use_prompts()
    i, n = cfg.shard_spec()
    settings = MCSettings(cfg.min_rollouts, cfg.max_rollouts, cfg.rule, cfg.temperature, cfg.max_new_tokens,
                          cfg.seed, cfg.pool, cfg.min_completion_chars, cfg.max_redraws)
    settings.check()
    if cfg.limit is not None and cfg.limit < 1:
        raise DataError(f"--limit must be at least 1, got {cfg.limit}")
    out = shards.shard_path(cfg.resolve(cfg.out), i, n)
    lock_output(out)  # before anything is read: a second copy on this output is refused at once
    src = cfg.resolve(cfg.tree)
    skips = cfg.skips(src)
    tree = read_nodes(src, skips)
    last_sid: dict[tuple, int] = {}  # from the whole tree: a shard or --limit may cut a response
    for x in tree:
        key = (x["id"], x.get("sample", 0))
        last_sid[key] = max(last_sid.get(key, 0), x["sid"])
    tree = tree[: cfg.limit]
    position = {node_key(x): k for k, x in enumerate(tree)}
    nodes = []
    for x in shards.select(tree, i, n):  # images of this shard only, each opened once
        if (bad := cfg.image_problem(x["image_path"])) is not None:
            skips.bad(bad, where(x))  # the node is skipped, the run goes on
        else:
            nodes.append(x)
    if skips.total:
        print(skips.line())
    skips.check(cfg.max_skip_fraction)  # before the output is opened: a flood leaves nothing behind
    if not nodes:
        raise DataError(f"{src}: no node to estimate in shard {cfg.shard} ({skips.line()})")
    with AppendWriter(out, key=node_key, resume=cfg.resume) as writer:
        shards.done_marker(out).unlink(missing_ok=True)  # unfinished until finalize() says otherwise
        todo = sum(not writer.done(node_key(x)) for x in nodes)
        print(f"MC estimation shard {cfg.shard}: {len(nodes)} nodes, {writer.n_resumed} already in {out}, "
              f"{todo} to expand (rule {cfg.rule}, rollouts {cfg.min_rollouts}..{cfg.max_rollouts})")
        if todo:
            backend = backend or cfg.make_backend()
            judge = judge or cfg.make_judge()
        stats = estimate(nodes, backend, judge, writer, settings, resolve_image=cfg.resolve, progress=progress,
                         last_sid=last_sid)
    generated = {k: stats[k] for k in ("completions", "completion_chars")}  # what dreamprm.plan predicts
    total = shards.finalize(out, lambda x: position.get(node_key(x), len(position)),
                            summary={"skipped": skips.as_dict(), "generated in this run": generated})
    done = read_records(out) if total else []
    by_domain = defaultdict(list)
    for x in done:
        by_domain[canonical(str(x["dataset"]))].append(x["accuracy"])
    print(f"expanded {stats['nodes']} nodes with {stats['completions']} completions "
          f"({stats['resumed']} resumed, {skips.total} input nodes skipped)")
    print(skips.line())
    if cfg.min_completion_chars:
        print(f"  short completions (<= {cfg.min_completion_chars} characters, not at a last step): "
              f"{stats['discarded']} discarded and redrawn, {stats['short_counted']} counted "
              f"(after {cfg.max_redraws} redraws, or greedy decoding)")
    for d, accs in sorted(by_domain.items()):
        print(f"  {d}: {len(accs)} nodes, mean accuracy {sum(accs) / len(accs):.3f}")
    print(f"  label histogram: {dict(sorted(histogram([x['accuracy'] for x in done]).items()))}")
    print(f"  rollouts per node: {dict(sorted(Counter(x['times'] for x in done).items()))}")
    if judge is not None:
        print("  " + judge.report())
    print(f"wrote {out}: {total} nodes")
    return {"out": out, "records": total, **stats, "skipped": skips.as_dict()}


def main(argv=None):
    return run(parse_args(EstimateArgs, argv))


if __name__ == "__main__":
    main()
