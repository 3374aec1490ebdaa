"""The ORM baseline's train data: one record per policy response, `add` = the whole response, `accuracy` = its
true_false (1.0 / 0.0). Train it with the existing trainer, every weight 1:

    python MC/orm_data.py --path . [--responses runs/rollouts/mmpr.jsonl] [--out runs/orm/train.jsonl]
    python reweighting/train.py --path . --baseline --input_format paper --train runs/orm/train.jsonl --out runs/orm
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from collections import Counter
from dataclasses import dataclass, field

from dreamprm.cli import StageArgs, parse_args
from dreamprm.domains import canonical
from dreamprm.io import DataError, write_jsonl
from dreamprm.mc import write_summary
from dreamprm.orm import orm_records
from dreamprm.rollout import read_policy_records


@dataclass
class OrmDataArgs(StageArgs):
    """Write ORM train records {id, sample, sid: 0, input, add: whole response, ground_truth, image_path, dataset,
    accuracy} from policy responses (the same train rollouts the PRM's MC tree starts from)."""
    responses: str = field(default="runs/rollouts/mmpr.jsonl", metadata={
        "help": "policy records: comma-separated files or glob patterns"})
    out: str = field(default="runs/orm/train.jsonl", metadata={"help": "ORM train records (JSONL)"})
    require_steps: bool = field(default=False, metadata={
        "help": "also drop responses without steps (default: kept; an outcome label needs no steps)"})
    per_domain: int = field(default=0, metadata={
        "help": "at most this many records per domain, a seeded random subset (0: all, the default)"})


def main(argv=None):
    cfg = parse_args(OrmDataArgs, argv)
    out = cfg.output(cfg.out, " (the records are deterministic)")
    skips = cfg.skips(cfg.responses)  # bad records and unusable responses, with their file:line
    records = read_policy_records(cfg, cfg.responses, skips=skips)
    train, skipped = orm_records(records, require_steps=cfg.require_steps, per_domain=cfg.per_domain,
                                 seed=cfg.seed, where=cfg.responses, skips=skips, image_problem=cfg.image_problem)
    capped = sum(k for why, k in skipped.items() if why.startswith("over the cap"))  # not bad input
    print(f"read {skips.seen} responses; {len(train)} ORM records, {skips.total} skipped"
          + (f", {capped} over the cap of {cfg.per_domain} per domain" if capped else ""))
    print(skips.line())
    skips.check(cfg.max_skip_fraction)  # before writing: a flood of bad records leaves no output
    if not train:
        raise DataError(f"no ORM record: no response has a final answer ({skips.line()})")
    write_jsonl(out, train)
    summary = {"records": len(train), "over_the_cap": capped, "skipped": skips.as_dict()}
    write_summary(out, summary)
    right = Counter(canonical(str(x["dataset"])) for x in train if x["accuracy"])
    for d, n in sorted(Counter(canonical(str(x["dataset"])) for x in train).items()):
        print(f"  {d}: {n} records, {right[d]} right")
    print(f"wrote {out}")
    return train, summary


if __name__ == "__main__":
    main()
