"""MMMU-Pro rollouts: 4 responses per question, the default input of the meta data rule (SPEC stages 2 and 6).

    python inference/mmmu_pro.py --path . [--policy DIR] [--shard 0/4] [--resume]   # -> runs/rollouts/mmmu_pro.jsonl
    python inference/meta_data.py --path .                                            # -> runs/meta/meta.jsonl
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import prompts
from dreamprm.cli import parse_args
from dreamprm.rollout import RolloutArgs, run


@dataclass
class MMMUProArgs(RolloutArgs):
    """MMMU-Pro rollouts for the meta set: N responses per question, each final answer checked."""
    dataset: str = field(default="mmmu_pro", metadata={"help": "dataset name: default input and output file names"})
    n: int = field(default=4, metadata={"help": "responses per question (the meta rule compares them)"})


def make_input(q: dict) -> str:
    # The record's input already is the released code's text, "Question: ...\nOptions: (A) ... (B) ...", so
    # the options are not added a second time; they stay in the record for the answer check (letters).
    return prompts.question_text(q["input"], q.get("hint"))


def make_prompt(q: dict) -> str:
    return prompts.structured_prompt(make_input(q))


def main(argv=None):
    return run(parse_args(MMMUProArgs, argv), make_prompt, make_input)


if __name__ == "__main__":
    main()
