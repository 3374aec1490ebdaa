"""Stage 6: the meta set for the upper level, from several responses per meta question (the paper's rule).

    python inference/meta_data.py --path . [--out runs/meta/meta.jsonl]              # MMMU-Pro (the default)
    python inference/meta_data.py --path . --responses runs/rollouts/mmmu.jsonl      # MMMU validation instead
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from collections import Counter
from dataclasses import dataclass, field

from dreamprm import shards
from dreamprm.cli import StageArgs, parse_args
from dreamprm.io import BadRecord, DataError, text, where, write_jsonl
from dreamprm.rollout import read_policy_records
from dreamprm.samples import policy_responses
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


def image_problem(cfg: MetaArgs, r: dict) -> BadRecord | None:
    try:
        return cfg.image_problem(text(r, "image_path", allow_none=True))
    except BadRecord as e:
        return e


def main(argv=None):
    cfg = parse_args(MetaArgs, argv)
    out = cfg.output(cfg.out, " (the selection is seeded)")
    skips = cfg.skips(f"responses {cfg.responses}")
    records = read_policy_records(cfg, cfg.responses, skips=skips)
    # a response listed twice and a response whose image cannot be shown are skipped and counted, with file:line
    ok = []
    for _, r, _ in policy_responses(records, cfg.responses, skips=skips):
        if (bad := image_problem(cfg, r)) is not None:
            skips.bad(bad, where(r))
        else:
            ok.append(r)
    skipped = skips.report(cfg.max_skip_fraction)
    # responses the paper's rule leaves out (no final answer, no steps) are counted with their lines, apart from
    # the bad records: they are the policy's outcomes, not faults of the file, so no ceiling applies to them
    dropped = cfg.skips(f"responses {cfg.responses} (meta rule)")
    dropped.seen = len(ok)
    meta, stats = meta_rule(ok, cfg.per_kind, cfg.seed, cfg.require_steps, skips=dropped)
    if dropped.total:
        print(dropped.line())
    reasons = {k: v for k, v in stats.items() if k.startswith(("skipped", "questions without")) and v}
    if not meta:  # nothing written: an empty meta set would only fail later, in reweighting/train.py
        raise DataError(f"{cfg.resolve(cfg.responses)}: no meta record from {len(ok)} usable responses "
                        f"({', '.join(f'{k}: {v}' for k, v in reasons.items()) or 'none usable'}); nothing written")
    write_jsonl(out, meta)
    shards.finalize(out, order=lambda r: 0, summary={"skipped": skipped, "dropped": dropped.as_dict(),
                                                     "stats": dict(stats)})
    per_q = Counter(Counter(r["id"] for r in ok).values())
    print(f"{stats['responses']} responses to {stats['questions']} questions (responses per question: "
          f"{dict(sorted(per_q.items()))})")
    for k, v in stats.items():
        if k not in ("responses", "questions", "records", "true", "false") and v:
            print(f"  {k}: {v}")
    print(f"wrote {out}: {stats['records']} records, {stats['true']} true / {stats['false']} false")
    return meta, stats


if __name__ == "__main__":
    main()
