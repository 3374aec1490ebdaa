"""The prompts of the method (SPEC stage 2 and the judge of stage 4), each defined once.

`structured_prompt` asks the policy for the five-step chain of thought ending in `Final answer: ...`;
`completion_prompt` gives it a partial chain (a tree node's step prefix) to continue, which is how MC
estimation rolls a prefix out; `judge_prompt` asks a text-only LLM whether a candidate answer matches the
ground truth. The image is not part of these strings: the chat template of the model inserts it.
"""
from __future__ import annotations

import re

STEPS = (
    ("Restate the question.",
     "Clearly rephrase or clarify the question in your own words."),
    ("Gather evidence from the image.",
     "Describe any relevant visual details (e.g., objects, people, locations, interactions) that might "
     "address the question."),
    ("Identify any background knowledge needed.",
     "Note any general facts, assumptions, or external knowledge that is necessary to address the question."),
    ("Reason with the current evidence.",
     "Integrate the information from the image, text, and relevant background knowledge, and show how these "
     "pieces of evidence lead toward an answer."),
    ("Summarize and conclude with all the information.",
     "Provide a concise, direct answer to the question, referencing the supporting evidence and reasoning."),
)
STEP_GUIDE = "\n\n".join(f"Step {i}: {title}\n   - {how}" for i, (title, how) in enumerate(STEPS, 1))

EXAMPLE_QUESTION = """\
We have an image showing a person wearing a white lab coat standing in front of a microscope on a lab bench.
The text states: "Dr. Park is a research scientist who works with microscopes and chemicals to study microorganisms."
Which of the following statements is most likely true about Dr. Park?
(A) Dr. Park is a chef who specializes in baking.
(B) Dr. Park is a scientist who probably conducts experiments.
(C) Dr. Park is a construction worker.
(D) Dr. Park is an airline pilot."""

EXAMPLE_STEPS = (
    "Step 1: Restate the question.\n"
    "   - The question asks which of the four statements is most likely true about Dr. Park, given the image "
    "and the text.",
    "Step 2: Gather evidence from the image.\n"
    "   - The image shows a person in a white lab coat in front of a microscope on a lab bench.\n"
    "   - The setting is a laboratory.",
    "Step 3: Identify any background knowledge needed.\n"
    "   - Someone in a lab coat using a microscope is usually doing scientific work.\n"
    "   - The text calls Dr. Park a research scientist who studies microorganisms.",
    "Step 4: Reason with the current evidence.\n"
    "   - The text and the laboratory setting agree that Dr. Park is a scientist, not a chef, a construction "
    "worker or a pilot.",
    "Step 5: Summarize and conclude with all the information.\n"
    "   - From the lab coat, the microscope and the text, the statement most likely true is B.",
)
EXAMPLE_ANSWER = "Final answer: B"

_HEADER = (
    "You have been given a question that involves both an image and a text.\n"
    "Your task is to {task} by following exactly five steps:\n\n"
    f"{STEP_GUIDE}\n\n"
    "Once you have completed your reasoning, provide your final answer in the format:\n\n"
    "Final answer: ...\n\n"
)
_ASK = ("Your task is to answer the question below. Give step by step reasoning before you answer, and when "
        "you're ready to answer, please use the format \"Final answer: ...\"")


def question_text(question: str, hint: str | None = None, options: list[str] | None = None) -> str:
    """The question as the policy sees it: text, then lettered options, then the dataset's hint."""
    parts = [question.strip()]
    if options and not _has_lettered_options(question, len(options)):
        parts.append("\n".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options)))
    if hint:
        parts.append(hint.strip())
    return "\n".join(parts)


def _has_lettered_options(question: str, n: int) -> bool:
    return all(re.search(rf"(?m)^\s*\(?{chr(65 + i)}[).:]", question) for i in range(n))


def structured_prompt(question: str, hint: str | None = None, options: list[str] | None = None) -> str:
    """The one-shot structured-thinking prompt used for every rollout (training, meta and benchmarks)."""
    example = "\n\n".join(EXAMPLE_STEPS) + "\n\n" + EXAMPLE_ANSWER
    return (_HEADER.format(task="analyze the question")
            + f"Example:\n\n{_ASK}\n\nQuestion:\n\n{EXAMPLE_QUESTION}\n\n{example}\n\n"
            + f"Question:\n\n{question_text(question, hint, options)}")


def completion_prompt(question: str, prefix: str, hint: str | None = None,
                      options: list[str] | None = None) -> str:
    """Ask the policy to continue a partial chain of thought (a tree node) through to the final answer.

    The generated text is the continuation only; `prefix + continuation` is the full rollout.
    """
    shown, rest = "\n\n".join(EXAMPLE_STEPS[:3]), "\n\n".join(EXAMPLE_STEPS[3:])
    return (_HEADER.format(task="complete the partial reasoning")
            + f"Example given input:\n\n{_ASK}\n\n{EXAMPLE_QUESTION}\n\n{shown}\n\n"
            + f"Your response should be:\n\n{rest}\n\n{EXAMPLE_ANSWER}\n\n"
            + f"Given input:\n\n{question_text(question, hint, options)}\n\n{prefix.rstrip()}")


def judge_prompt(question: str, ground_truth: str, candidate: str) -> str:
    """The LLM judge's prompt: verify a match, never solve the question."""
    return (
        "Task: Do not attempt to solve the question. Your only task is to verify whether the candidate answer "
        "matches the ground truth. The candidate answer may be worded differently: if it indicates the same "
        "thing (the same option, the same value, the same entity), it is correct. For multiple-choice "
        "questions, '(D) 7.5' matches the ground truth 'D'.\n"
        f"Question: {question}\n"
        f"Ground truth answer: {ground_truth}\n"
        f"Candidate answer: {candidate}\n\n"
        "Respond with a single word: 'correct' or 'incorrect'."
    )


def parse_judge(reply: str) -> bool | None:
    """The judge's verdict: True, False, or None when the reply says neither."""
    words = re.findall(r"[a-z]+", reply.lower())
    for w in words:  # the first verdict word wins; 'incorrect' is checked as a whole word
        if w == "correct":
            return True
        if w in ("incorrect", "wrong"):
            return False
    return None
