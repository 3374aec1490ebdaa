"""MM-Vet (v1) rollouts: 8 candidates per question for best-of-N (SPEC stage 2).

    python inference/mmvet.py --path . [--policy DIR] [--shard 0/4] [--resume]   # -> runs/rollouts/mmvet.jsonl
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field

from dreamprm import prompts
from dreamprm.cli import parse_args
from dreamprm.rollout import RolloutArgs, run


@dataclass
class MMVetArgs(RolloutArgs):
    """MM-Vet rollouts: N responses per question, each final answer checked (mostly by the LLM judge)."""
    dataset: str = field(default="mmvet", metadata={"help": "dataset name: default input and output file names"})
    n: int = field(default=8, metadata={"help": "responses per question (best-of-N candidates)"})


def make_input(q: dict) -> str:
    return prompts.question_text(q["input"], q.get("hint"), q.get("options"))


def make_prompt(q: dict) -> str:
    return prompts.structured_prompt(make_input(q))


def truth(q: dict) -> tuple[str, None]:
    # MM-Vet answers are open-ended and mark alternatives and conjunctions as "<OR>" / "<AND>": spell them
    # out so the rules can still match an exact answer and the LLM judge reads plain words.
    gt = str(q["ground_truth"]).replace("<OR>", " or ").replace("<AND>", " and ")
    return " ".join(gt.split()), None


def main(argv=None):
    return run(parse_args(MMVetArgs, argv), make_prompt, make_input, truth)


if __name__ == "__main__":
    main()
