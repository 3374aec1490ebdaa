"""MathVision (test) rollouts: 8 candidates per question for best-of-N (SPEC stage 2).

    python inference/mathvision.py --path . [--policy DIR] [--shard 0/4] [--resume]  # -> runs/rollouts/mathvision.jsonl
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import prompts
from dreamprm.cli import parse_args
from dreamprm.rollout import RolloutArgs, run


@dataclass
class MathVisionArgs(RolloutArgs):
    """MathVision test rollouts: N responses per question, each final answer checked."""
    dataset: str = field(default="mathvision", metadata={"help": "dataset name: default input and output file names"})
    n: int = field(default=8, metadata={"help": "responses per question (best-of-N candidates)"})
    # The released MathVision script allows 2,048 new tokens; every other released script 1,024.
    max_new_tokens: int = field(default=2048, metadata={"help": "new tokens per response"})


def make_input(q: dict) -> str:
    # About half of MathVision is multiple choice (options A-E, answer a letter), the rest free-form values;
    # an empty option list means free-form.
    return prompts.question_text(q["input"], q.get("hint"), q.get("options") or None)


def make_prompt(q: dict) -> str:
    return prompts.structured_prompt(make_input(q))


# Answer check: the default (ground_truth, options); LaTeX answers the rules cannot parse go to the judge.

def main(argv=None):
    return run(parse_args(MathVisionArgs, argv), make_prompt, make_input)


if __name__ == "__main__":
    main()
