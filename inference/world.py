"""Rollouts on the CPU mini world (dreamprm/miniworld/world.py): any of its domains, meta source or test benchmarks.

    python inference/world.py --path . --dataset bars --questions runs/world/data/bars.jsonl \
        --backend simulated --policy runs/world/policy.json --judge none --n 1
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import prompts
from dreamprm.cli import parse_args
from dreamprm.rollout import RolloutArgs, run


@dataclass
class WorldArgs(RolloutArgs):
    """Mini-world rollouts: N responses per question, each integer answer checked by the rules."""
    dataset: str = field(default="world", metadata={"help": "dataset name: default input and output file names"})
    n: int = field(default=8, metadata={"help": "responses per question (1 for training domains, 4 for meta)"})


def make_input(q: dict) -> str:
    return prompts.question_text(q["input"], q.get("hint"), q.get("options"))


def make_prompt(q: dict) -> str:
    return prompts.structured_prompt(make_input(q))


def main(argv=None):
    return run(parse_args(WorldArgs, argv), make_prompt, make_input)


if __name__ == "__main__":
    main()
