"""MMMU rollouts: 4 responses per question, the input of the meta data rule (SPEC stages 2 and 6).

    python inference/mmmu.py --path . [--policy DIR] [--shard 0/4] [--resume]   # -> runs/rollouts/mmmu.jsonl
    python inference/meta_data.py --path .                                        # -> runs/meta/meta.jsonl
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import prompts
from dreamprm.cli import parse_args
from dreamprm.rollout import RolloutArgs, run


@dataclass
class MMMUArgs(RolloutArgs):
    """MMMU rollouts for the meta set: N responses per question, each final answer checked."""
    dataset: str = field(default="mmmu", metadata={"help": "dataset name: default input and output file names"})
    n: int = field(default=4, metadata={"help": "responses per question (the meta rule compares them)"})


def make_input(q: dict) -> str:
    # MMMU refers to its pictures as "<image 1>" .. "<image 7>" and the placeholders stay in the text; the
    # policy is shown the first image (`image_path`). Open questions have no options (answer checked as text).
    return prompts.question_text(q["input"], q.get("hint"), q.get("options"))


def make_prompt(q: dict) -> str:
    return prompts.structured_prompt(make_input(q))


def main(argv=None):
    return run(parse_args(MMMUArgs, argv), make_prompt, make_input)


if __name__ == "__main__":
    main()
