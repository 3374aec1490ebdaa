"""MathVista (testmini) rollouts: 8 candidates per question for best-of-N (SPEC stage 2).

    python inference/mathvista.py --path . [--policy DIR] [--shard 0/4] [--resume]   # -> runs/rollouts/mathvista.jsonl
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import prompts
from dreamprm.cli import parse_args
from dreamprm.rollout import RolloutArgs, run


@dataclass
class MathVistaArgs(RolloutArgs):
    """MathVista testmini rollouts: N responses per question, each final answer checked."""
    dataset: str = field(default="mathvista", metadata={"help": "dataset name: default input and output file names"})
    n: int = field(default=8, metadata={"help": "responses per question (best-of-N candidates)"})


def make_input(q: dict) -> str:
    # Multiple-choice questions get their choices as (A) (B) ...; MathVista's instruction ("Hint: Please answer
    # the question requiring an integer answer ...") sits in `hint` and follows the question, as in its query.
    return prompts.question_text(q["input"], q.get("hint"), q.get("options"))


def make_prompt(q: dict) -> str:
    return prompts.structured_prompt(make_input(q))


# Answer check: the default (ground_truth, options). Multiple choice: the ground truth is the letter; free-form
# numbers match when equal at the decimals the ground truth is written with (MathVista's `precision`).

def main(argv=None):
    return run(parse_args(MathVistaArgs, argv), make_prompt, make_input)


if __name__ == "__main__":
    main()
