"""Export MC step labels to TRL's stepwise-supervision format, one row per response:
{"prompt", "completions": [step, ...], "labels": [...]} (soft float labels unless --threshold is given).

    python MC/export_trl.py --path . [--nodes runs/mc/estimate.jsonl] [--out runs/mc/trl.jsonl] [--threshold 0]
"""
from dataclasses import dataclass, field

from dreamprm.cli import StageArgs, parse_args
from dreamprm.io import read_records, write_jsonl
from dreamprm.mc import NODE_FIELDS, to_trl


@dataclass
class ExportArgs(StageArgs):
    """Write labelled nodes as TRL stepwise supervision (extra keys: id, sample, image_path, dataset)."""
    nodes: str = field(default="runs/mc/estimate.jsonl", metadata={
        "help": "labelled nodes; all nodes of a response are needed, so prefer estimate output over train data"})
    out: str = field(default="runs/mc/trl.jsonl", metadata={"help": "TRL rows (JSONL)"})
    threshold: float | None = field(default=None, metadata={
        "help": "hard labels accuracy > threshold (0 = 'some rollout was right'); default: soft float labels"})


def main(argv=None):
    cfg = parse_args(ExportArgs, argv)
    out = cfg.output(cfg.out)
    rows, skipped = to_trl(read_records(cfg.resolve(cfg.nodes), required=NODE_FIELDS), cfg.threshold)
    write_jsonl(out, rows)
    for why, k in skipped.items():
        print(f"  {k} {why}")
    print(f"wrote {out}: {len(rows)} responses, {sum(len(r['labels']) for r in rows)} labelled steps")
    return rows


if __name__ == "__main__":
    main()
