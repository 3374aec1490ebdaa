"""MMStar rollouts: 8 candidates per question for best-of-N (SPEC stage 2).

    python inference/mmstar.py --path . [--policy DIR] [--shard 0/4] [--resume]   # -> runs/rollouts/mmstar.jsonl
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import prompts
from dreamprm.cli import parse_args
from dreamprm.rollout import RolloutArgs, run


@dataclass
class MMStarArgs(RolloutArgs):
    """MMStar rollouts: N responses per question, each final answer checked."""
    dataset: str = field(default="mmstar", metadata={"help": "dataset name: default input and output file names"})
    n: int = field(default=8, metadata={"help": "responses per question (best-of-N candidates)"})


def make_input(q: dict) -> str:
    # MMStar questions end with their own "Options: A: ..., B: ..." line and every answer is a letter.
    return prompts.question_text(q["input"], q.get("hint"), q.get("options"))


def make_prompt(q: dict) -> str:
    return prompts.structured_prompt(make_input(q))


def main(argv=None):
    return run(parse_args(MMStarArgs, argv), make_prompt, make_input)


if __name__ == "__main__":
    main()
