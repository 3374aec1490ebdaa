"""Rollouts for the 15 MMPR training domains: one response per question, the input of MC labelling (stage 2).

    python inference/mmpr.py --path . [--domains chartqa,geos] [--shard 0/4] [--resume]   # -> runs/rollouts/mmpr.jsonl
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import prompts
from dreamprm.cli import parse_args
from dreamprm.domains import MMPR_DOMAINS, canonical
from dreamprm.io import DataError
from dreamprm.rollout import RolloutArgs, run


@dataclass
class MMPRArgs(RolloutArgs):
    """MMPR training-domain rollouts: N responses per question, each final answer checked."""
    dataset: str = field(default="mmpr", metadata={"help": "dataset name: default input and output file names"})
    n: int = field(default=1, metadata={"help": "responses per question (the paper samples one)"})
    domains: str = field(default="", metadata={"help": "comma-separated MMPR domains to keep (default: all 15)"})


def make_input(q: dict) -> str:
    # MMPR questions carry their own instruction ("Answer the question using a single word or phrase.").
    return prompts.question_text(q["input"], q.get("hint"), q.get("options"))


def make_prompt(q: dict) -> str:
    return prompts.structured_prompt(make_input(q))


def main(argv=None):
    cfg = parse_args(MMPRArgs, argv)
    wanted = {canonical(d) for d in cfg.domains.split(",") if d.strip()}
    if unknown := wanted - set(MMPR_DOMAINS):
        raise DataError(f"--domains: unknown domain(s) {', '.join(sorted(unknown))}; known: {', '.join(MMPR_DOMAINS)}")
    return run(cfg, make_prompt, make_input,
               keep=lambda q: not wanted or canonical(str(q.get("dataset") or "")) in wanted)


if __name__ == "__main__":
    main()
