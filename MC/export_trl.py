"""Export MC step labels to TRL's stepwise supervision, one row per response (over `dreamprm.export.to_trl`):
{"prompt", "completions": [step, ...], "labels": [bool, ...]} plus id, sample, image_path, dataset.

Labels are hard, `accuracy > --threshold` (default 0.5: most rollouts from the prefix reached the right
answer; 0: some rollout did, Math-Shepherd's hard estimate), because TRL's PRMTrainer applies int() to every
label. --soft_labels writes the accuracies as floats, for trainers with a float-target loss only.

    python MC/export_trl.py --path . [--nodes runs/mc/estimate.jsonl] [--out runs/mc/trl.jsonl] [--threshold 0]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm.cli import StageArgs, parse_args
from dreamprm.export import DEFAULT_THRESHOLD, check_threshold, to_trl
from dreamprm.io import DataError, write_jsonl
from dreamprm.mc import read_nodes, write_summary

SOFT_WARNING = (
    "warning: --soft_labels writes float labels. TRL's PRMTrainer applies int() to every label, so each one "
    "below 1.0 becomes 0 (wrong) and only 1.0 stays 1; use these rows only with a trainer whose loss takes "
    "float targets (soft binary cross-entropy or MSE on the accuracy), not with TRL's.")


@dataclass
class ExportArgs(StageArgs):
    """Write labelled nodes as TRL stepwise supervision (extra keys: id, sample, image_path, dataset)."""
    nodes: str = field(default="runs/mc/estimate.jsonl", metadata={
        "help": "labelled nodes; all nodes of a response are needed, so prefer estimate output over train data"})
    out: str = field(default="runs/mc/trl.jsonl", metadata={"help": "TRL rows (JSONL)"})
    threshold: float = field(default=DEFAULT_THRESHOLD, metadata={
        "help": "label = accuracy > threshold. 0.5: most rollouts from the step reached the right answer; "
                "0: some rollout did (Math-Shepherd's hard estimate, VisualPRM400K's)"})
    soft_labels: bool = field(default=False, metadata={
        "help": "write the MC accuracies as float labels instead: TRL's PRMTrainer applies int() to them, so "
                "only 1.0 stays 1; only for a trainer whose loss takes float targets. --threshold is then unused"})


def main(argv=None):
    cfg = parse_args(ExportArgs, argv)
    check_threshold(cfg.threshold)
    out = cfg.output(cfg.out)
    src = cfg.resolve(cfg.nodes)
    skips = cfg.skips(src)
    rows, cut = to_trl(read_nodes(src, skips), cfg.threshold, cfg.soft_labels, at=str(src), skips=skips)
    print(skips.line())
    skips.check(cfg.max_skip_fraction)  # before writing: a flood of bad nodes leaves no output
    if not rows:
        raise DataError(f"{src}: no response to export ({skips.line()})")
    if cfg.soft_labels:
        print(SOFT_WARNING, file=sys.stderr)
    write_jsonl(out, rows)
    write_summary(out, {"records": len(rows), **cut, "skipped": skips.as_dict()})
    for why, k in cut.items():
        print(f"  {k} {why}")
    labels = [x for r in rows for x in r["labels"]]
    n_true = sum(labels)
    kind = ("soft labels" if cfg.soft_labels
            else f"{n_true} true, {len(labels) - n_true} false: accuracy > {cfg.threshold}")
    print(f"wrote {out}: {len(rows)} responses, {len(labels)} labelled steps ({kind})")
    return rows


if __name__ == "__main__":
    main()
