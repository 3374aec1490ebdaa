"""Stage 5: train data. Per domain at most 1,000 labelled nodes: mixed-outcome nodes first, then equal
numbers of accuracy-0 and accuracy-1 nodes, then any remainder (seeded).

    python MC/train_data.py --path . [--nodes runs/mc/estimate.jsonl] [--out runs/mc/train.jsonl]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import shards
from dreamprm.cli import StageArgs, parse_args
from dreamprm.io import DataError, write_jsonl
from dreamprm.mc import check_node, read_nodes, write_summary
from dreamprm.selection import balance, histogram


@dataclass
class TrainDataArgs(StageArgs):
    """Select the lower-level train records {id, sid, input, add, ground_truth, image_path, dataset, score,
    times, accuracy, instance} from MC-labelled nodes."""
    nodes: str = field(default="runs/mc/estimate.jsonl", metadata={"help": "labelled nodes from MC/estimate.py"})
    out: str = field(default="runs/mc/train.jsonl", metadata={"help": "train records (JSONL)"})
    per_domain: int = field(default=1000, metadata={"help": "at most this many nodes per domain"})
    instance_ids: bool = field(default=True, metadata={
        "help": "give each record an `instance` id, <id>-<sample>-<sid>, the key of its weight under "
                "reweighting/train.py --reweight instance_table (--no_instance_ids: the released format)"})


def main(argv=None):
    cfg = parse_args(TrainDataArgs, argv)
    src, out = cfg.resolve(cfg.nodes), cfg.output(cfg.out, " (the selection is seeded)")
    if not shards.done_marker(src).exists():
        print(f"warning: {src} has no .done marker: MC estimation may be unfinished (or its shards unmerged)")

    def check(r):  # a node the trainer could not use must not take a place in the per-domain selection
        check_node(r)
        if (bad := cfg.image_problem(r["image_path"])) is not None:
            raise bad

    skips = cfg.skips(src)
    nodes = read_nodes(src, skips, check)
    print(skips.line())
    skips.check(cfg.max_skip_fraction)  # before writing: a flood of bad nodes leaves no output
    train, stats = balance(nodes, cap=cfg.per_domain, seed=cfg.seed)
    if not train:
        raise DataError(f"{src}: no train record selected from {len(nodes)} usable nodes "
                        f"(--per_domain {cfg.per_domain}; {skips.line()})")
    if cfg.instance_ids:
        train = [{**r, "instance": f"{r['id']}-{r.get('sample', 0)}-{r['sid']}"} for r in train]
        if len({r["instance"] for r in train}) < len(train):
            raise DataError(f"{src}: two selected nodes share id, sample and sid: the nodes hold a duplicate")
    write_jsonl(out, train)
    summary = {"records": len(train), "nodes": len(nodes), "skipped": skips.as_dict(),
               "per_domain": {d: dict(c) for d, c in stats.items()}}
    write_summary(out, summary)
    print(f"{len(nodes)} labelled nodes -> {len(train)} train records (at most {cfg.per_domain} per domain)")
    print(f"  {'domain':<14}" + "".join(f"{h:>16}" for h in ("mixed", "accuracy 0", "accuracy 1"))
          + "   (selected / available)")
    for d, c in stats.items():
        print(f"  {d:<14}" + "".join(f"{c[f'selected {k}']:>8} / {c[f'available {k}']:<5}"
                                     for k in ("mixed", "0", "1")))
    print(f"  label histogram: {dict(sorted(histogram([r['accuracy'] for r in train]).items()))}")
    print(f"wrote {out}")
    return train, summary


if __name__ == "__main__":
    main()
