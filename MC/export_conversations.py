"""Export MC step labels as InternVL chat conversations in VisualPRM400K's layout, one row per response
(over `dreamprm.export.to_conversations`): a system turn, then one human turn per step (the first also holds
`<image>` and the question) each answered by a gpt turn `+` or `-` (`accuracy > --threshold`).

Read by InternVL's finetune script (`internvl_chat_finetune.py`, JSONL annotation) and DreamPRM-1.5's
trainers (a JSON array: give --out a .json name).

    python MC/export_conversations.py --path . [--nodes runs/mc/estimate.jsonl] [--out runs/mc/conversations.jsonl]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm.cli import StageArgs, parse_args
from dreamprm.export import DEFAULT_THRESHOLD, check_threshold, to_conversations
from dreamprm.io import DataError, write_json, write_jsonl
from dreamprm.mc import read_nodes, write_summary


@dataclass
class ConversationArgs(StageArgs):
    """Write labelled nodes as InternVL / VisualPRM conversations (extra keys: question_id, sample, domain)."""
    nodes: str = field(default="runs/mc/estimate.jsonl", metadata={
        "help": "labelled nodes; all nodes of a response are needed, so prefer estimate output over train data"})
    out: str = field(default="runs/mc/conversations.jsonl", metadata={
        "help": "conversation rows: JSONL (InternVL), or a JSON array when the name ends in .json (DreamPRM-1.5)"})
    threshold: float = field(default=DEFAULT_THRESHOLD, metadata={
        "help": "'+' when accuracy > threshold. 0.5: most rollouts from the step reached the right answer; "
                "0: some rollout did (VisualPRM400K's mc_threshold, Math-Shepherd's hard estimate)"})


def main(argv=None):
    cfg = parse_args(ConversationArgs, argv)
    check_threshold(cfg.threshold)
    out = cfg.output(cfg.out)
    src = cfg.resolve(cfg.nodes)
    skips = cfg.skips(src)
    rows, cut = to_conversations(read_nodes(src, skips), cfg.threshold, at=str(src), skips=skips)
    print(skips.line())
    skips.check(cfg.max_skip_fraction)  # before writing: a flood of bad nodes leaves no output
    if not rows:
        raise DataError(f"{src}: no response to export ({skips.line()})")
    (write_json if out.suffix == ".json" else write_jsonl)(out, rows)
    write_summary(out, {"records": len(rows), **cut, "skipped": skips.as_dict()})
    for why, k in cut.items():
        print(f"  {k} {why}")
    marks = [t["value"] for r in rows for t in r["conversations"] if t["from"] == "gpt"]
    print(f"wrote {out}: {len(rows)} responses, {len(marks)} labelled steps "
          f"({marks.count('+')} '+', {marks.count('-')} '-', '+' when accuracy > {cfg.threshold})")
    return rows


if __name__ == "__main__":
    main()
