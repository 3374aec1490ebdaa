"""Stage 6: the meta set for the upper level, from several responses per meta question (the paper's rule).

    python inference/meta_data.py --path . [--out runs/meta/meta.jsonl]              # MMMU-Pro (the default)
    python inference/meta_data.py --path . --responses runs/rollouts/mmmu.jsonl      # MMMU validation instead
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from collections import Counter
from dataclasses import dataclass, field

from dreamprm.cli import StageArgs, parse_args
from dreamprm.io import write_jsonl
from dreamprm.rollout import read_policy_records
from dreamprm.selection import meta_rule


@dataclass
class MetaArgs(StageArgs):
    """Meta records {id, sample, true_false, input = question + blank line + response, image_path}: one right and
    one wrong response where a question's responses disagree, plus up to 122 always-right and 122
    always-wrong questions."""
    responses: str = field(default="runs/rollouts/mmmu_pro.jsonl", metadata={
        "help": "policy records with several responses per question: inference/mmmu_pro.py (MMMU-Pro, the "
                "source the paper's code used) or runs/rollouts/mmmu.jsonl (inference/mmmu.py, MMMU validation)"})
    out: str = field(default="runs/meta/meta.jsonl", metadata={"help": "meta records (JSONL)"})
    per_kind: int = field(default=122, metadata={"help": "at most this many always-right and always-wrong questions"})
    require_steps: bool = field(default=True, metadata={
        "help": "skip responses without a 'Step' (no prefix to score); false reproduces the paper's rule exactly"})


def main(argv=None):
    cfg = parse_args(MetaArgs, argv)
    out = cfg.output(cfg.out, " (the selection is seeded)")
    records = read_policy_records(cfg, cfg.responses)
    ok = [r for r in records if not r.get("image_path") or cfg.resolve(r["image_path"]).is_file()]
    meta, stats = meta_rule(ok, cfg.per_kind, cfg.seed, cfg.require_steps)
    stats["skipped responses: missing image"] = len(records) - len(ok)
    write_jsonl(out, meta)
    per_q = Counter(Counter(r["id"] for r in records).values())
    print(f"{stats['responses']} responses to {stats['questions']} questions (responses per question: "
          f"{dict(sorted(per_q.items()))})")
    for k, v in stats.items():
        if k not in ("responses", "questions", "records", "true", "false") and v:
            print(f"  {k}: {v}")
    print(f"wrote {out}: {stats['records']} records, {stats['true']} true / {stats['false']} false")
    return meta, stats


if __name__ == "__main__":
    main()
