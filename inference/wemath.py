"""WeMath (testmini) rollouts: 8 candidates per question for best-of-N (SPEC stage 2).

    python inference/wemath.py --path . [--policy DIR] [--shard 0/4] [--resume]   # -> runs/rollouts/wemath.jsonl
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import prompts
from dreamprm.cli import parse_args
from dreamprm.rollout import RolloutArgs, run


@dataclass
class WeMathArgs(RolloutArgs):
    """WeMath testmini rollouts: N responses per question, each final answer checked."""
    dataset: str = field(default="wemath", metadata={"help": "dataset name: default input and output file names"})
    n: int = field(default=8, metadata={"help": "responses per question (best-of-N candidates)"})


def make_input(q: dict) -> str:
    # WeMath's option string ("A. 3cm; B. 4cm; ...") is split into `options` by the converter (or left in the
    # question when it does not split); question_text adds an (A) (B) list unless the question letters them.
    return prompts.question_text(q["input"], q.get("hint"), q.get("options"))


def make_prompt(q: dict) -> str:
    return prompts.structured_prompt(make_input(q))


# Answer check: the default; the ground truth is an option letter.

def main(argv=None):
    return run(parse_args(WeMathArgs, argv), make_prompt, make_input)


if __name__ == "__main__":
    main()
