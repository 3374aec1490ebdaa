"""Stage 3: the step-prefix tree. One node per step of every policy response that has a final answer.

    python MC/tree.py --path . [--responses runs/rollouts/mmpr.jsonl] [--out runs/mc/tree.jsonl]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from collections import Counter
from dataclasses import dataclass, field

from dreamprm.cli import StageArgs, parse_args
from dreamprm.domains import canonical
from dreamprm.io import DataError, write_jsonl
from dreamprm.mc import POLICY_FIELDS, build_tree, write_summary
from dreamprm.rollout import read_policy_records


@dataclass
class TreeArgs(StageArgs):
    """Build MC tree nodes {id, sample, sid, input, add, ground_truth, image_path, dataset, score, times,
    accuracy} from policy responses: one node per step prefix, initialised from the response's verdict."""
    responses: str = field(default="runs/rollouts/mmpr.jsonl", metadata={
        "help": "policy records: comma-separated files or glob patterns"})
    out: str = field(default="runs/mc/tree.jsonl", metadata={"help": "tree nodes (JSONL)"})


def main(argv=None):
    cfg = parse_args(TreeArgs, argv)
    out = cfg.output(cfg.out, " (the tree is deterministic)")
    skips = cfg.skips(cfg.responses)  # bad records and unusable responses, with their file:line
    records = read_policy_records(cfg, cfg.responses, required=POLICY_FIELDS + ("ground_truth",), skips=skips)
    nodes, _ = build_tree(records, where=cfg.responses, skips=skips, image_problem=cfg.image_problem)

    responses = Counter(canonical(str(n["dataset"])) for n in nodes if n["sid"] == 1)
    print(f"read {skips.seen} responses; {sum(responses.values())} kept, {skips.total} skipped")
    print(skips.line())
    skips.check(cfg.max_skip_fraction)  # before writing: a flood of bad records leaves no output
    if not nodes:
        raise DataError(f"no tree nodes: no response has both steps and a final answer ({skips.line()})")
    write_jsonl(out, nodes)
    summary = {"records": len(nodes), "responses": sum(responses.values()), "skipped": skips.as_dict()}
    write_summary(out, summary)

    per_domain = Counter(canonical(str(n["dataset"])) for n in nodes)
    for d in sorted(per_domain):
        print(f"  {d}: {responses[d]} responses -> {per_domain[d]} nodes")
    steps = Counter(Counter((n["id"], n["sample"]) for n in nodes).values())
    print(f"  steps per response: {dict(sorted(steps.items()))}")
    print(f"  initial labels: {sum(n['score'] for n in nodes)} nodes from right responses, "
          f"{sum(1 - n['score'] for n in nodes)} from wrong ones")
    print(f"wrote {out}: {len(nodes)} nodes")
    return nodes, summary


if __name__ == "__main__":
    main()
