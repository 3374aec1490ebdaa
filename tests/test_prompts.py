import json
import re

import pytest

from dreamprm import prompts
from dreamprm.backends import Backend
from dreamprm.cli import parse_args
from dreamprm.io import DataError, read_records
from dreamprm.judge import Judge
from dreamprm.rollout import run
from dreamprm.steps import find_steps
from conftest import load_script

BLOCK = re.compile(r"^Step (\d): (.*)\n((?:   - .*\n?)+)", re.MULTILINE)


def blocks(text: str) -> list[tuple[int, str, int]]:
    """(step number, title, number of bullets) of every 'Step k: title' block with '   - ' bullets."""
    return [(int(m[1]), m[2], m[3].count("   - ")) for m in BLOCK.finditer(text)]


@pytest.fixture(autouse=True)
def shipped_prompts():
    yield
    prompts.load_templates()  # the templates are module state: later tests must see the shipped ones


def guide_is_the_originals(bs):
    assert [(n, t) for n, t, _ in bs[:5]] == [(i, title) for i, (title, _) in enumerate(prompts.STEPS, 1)]
    assert [b for _, _, b in bs[:5]] == [1, 1, 1, 2, 1]  # step 4: integrate the evidence, then show the way
    assert [len(bullets) for _, bullets in prompts.STEPS] == [1, 1, 1, 2, 1]


def test_structured_template_has_the_originals_structure():
    t = prompts.template("structured")
    bs = blocks(t)
    guide_is_the_originals(bs)
    assert [(n, b) for n, _, b in bs[5:]] == [(1, 1), (2, 2), (3, 2), (4, 3), (5, 1)]  # the worked example
    guide_end, example = t.index("Step 5:"), t.index("Example:")
    assert guide_end < t.index("\nFinal answer: ...\n") < example  # the format instruction after the guide
    instruction = t[example:].split("\n\n")[1]
    assert instruction.startswith("Answer the question below.") and '"Final answer: ..."' in instruction
    question = t[t.index("Question:", example):t.index("Step 1:", example)]  # the example's question, then steps
    assert all(f"\n({c}) " in question for c in "ABCD")
    assert t.endswith("Final answer: B\n\nQuestion:\n\n{question}")  # the hint comes in {question}, after it
    for i, (title, bullets) in enumerate(prompts.STEPS, 1):
        assert f"Step {i}: {title}\n" + "".join(f"   - {b}\n" for b in bullets) in t + "\n"


def test_structured_prompt_puts_options_and_hint_after_the_question():
    p = prompts.structured_prompt("How many cubes?", hint="Hint: answer with an integer.", options=None)
    assert p.endswith("Question:\n\nHow many cubes?\nHint: answer with an integer.")
    example = p[p.index("Example:"):]
    assert [s.number for s in find_steps(example)] == [1, 2, 3, 4, 5] and "Final answer: B" in example


def test_options_are_lettered_once():
    p = prompts.structured_prompt("Which one?", options=["red", "blue"])
    assert p.endswith("Which one?\n(A) red\n(B) blue")
    already = "Which one?\n(A) red\n(B) blue"
    assert prompts.question_text(already, options=["red", "blue"]) == already


def test_completion_template_shows_steps_1_to_3_given_and_4_to_5_as_the_response():
    t = prompts.template("completion")
    bs = blocks(t)
    guide_is_the_originals(bs)
    given, response = t.split("The continuation you should write:")
    assert [(n, b) for n, _, b in blocks(given)[5:]] == [(1, 1), (2, 2), (3, 2)]
    assert [(n, b) for n, _, b in blocks(response)] == [(4, 3), (5, 1)]
    assert "Final answer: B" in response and "Question:" not in given  # the original's example has no header
    assert t.endswith("The partial input to complete:\n\n{question}\n\n{prefix}")


def test_completion_prompt_ends_with_the_prefix_as_given():
    prefix = "Step 1: Restate.\n   - x\n\nStep 2: Look.\n   - y\n\n"
    p = prompts.completion_prompt("What is 2+2?", prefix)
    assert p.endswith("to complete:\n\nWhat is 2+2?\n\n" + prefix)  # question + "\n\n" + add, as the original


def test_judge_prompt_has_the_originals_rules_and_parsing():
    t = prompts.template("judge")
    assert "do not try to solve the question" in t
    assert "If the candidate answer contains the ground truth, the candidate is correct." in t
    assert "name the same option" in t and "not written as a plain letter" in t
    assert 'the candidate "(D) 7.5" and the ground truth "D"' in t
    assert t.endswith("Reply with a single word on one line: correct or incorrect.")
    p = prompts.judge_prompt("Q?", "7", "(D) 7")
    assert "Question: Q?\nGround truth answer: 7\nCandidate answer: (D) 7\n" in p
    assert prompts.parse_judge("correct") is True
    assert prompts.parse_judge("Incorrect.") is False
    assert prompts.parse_judge("The answer is wrong") is False
    assert prompts.parse_judge("'correct'") is True
    assert prompts.parse_judge("I cannot tell") is None


def test_fill_is_brace_safe():
    t = r"Solve \frac{1}{2} and {x y} {{question}}: {question}"
    assert prompts.fill(t, question="what is {prefix}?") == r"Solve \frac{1}{2} and {x y} {question}: what is {prefix}?"


class Recorder(Backend):
    """Answers 'Final answer: 0' (no option of the multiple-choice question: the LLM judge must decide)."""

    def __init__(self):
        self.texts = []

    def generate(self, requests, n, temperature, max_new_tokens):
        self.texts += [r.text for r in requests]
        return [["Step 1: look.\n\nFinal answer: 0"] * n for _ in requests]


@pytest.fixture
def root(tmp_path):
    (tmp_path / "data").mkdir()
    qs = [{"id": "q0", "input": "Which is larger?", "ground_truth": "B", "options": ["2", "3"],
           "hint": "Pick one.", "image_path": None}]
    (tmp_path / "data" / "mathvista.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    return tmp_path


def rollouts(root, *extra):
    mod = load_script("inference/mathvista.py")
    cfg = parse_args(mod.MathVistaArgs, ["--path", str(root), "--policy", "unused", "--n", "1", "--gpu", "cpu",
                                         *extra])
    backend, asked = Recorder(), []
    judge = Judge(reply_fn=lambda texts: asked.extend(texts) or ["correct"] * len(texts))
    run(cfg, mod.make_prompt, mod.make_input, backend=backend, judge=judge)
    return backend.texts, asked


def test_a_prompts_dir_replaces_the_defaults_end_to_end(root):
    mine = root / "my_prompts"
    mine.mkdir()
    (mine / "structured.txt").write_text("Think in {{steps}}, e.g. \\frac{1}{2}.\nQ: {question}\n")
    (mine / "judge.txt").write_text("{ground_truth} vs {candidate} for {question}?\n")
    texts, asked = rollouts(root, "--prompts_dir", "my_prompts", "--out", "mine.jsonl")
    assert texts == ["Think in {steps}, e.g. \\frac{1}{2}.\nQ: Which is larger?\n(A) 2\n(B) 3\nPick one."]
    assert asked == ["B vs 0 for Which is larger?\n(A) 2\n(B) 3\nPick one.?"]
    assert read_records(root / "mine.jsonl")[0]["judged_by"] == "judge"
    texts, asked = rollouts(root, "--out", "shipped.jsonl")  # without the option: the shipped defaults again
    assert texts[0].startswith("This question comes with an image") and asked[0].startswith("Task: do not try")


@pytest.mark.parametrize("name,text,message", [
    ("structured.txt", "Q: {questoin}", r"structured\.txt: unknown placeholder \{questoin\} in the structured prompt"),
    ("completion.txt", "Q: {question}", r"completion\.txt: the completion prompt lacks the placeholder \{prefix\}"),
    ("judge.txt", "{question} {ground_truth} {{candidate}}", r"judge\.txt: the judge prompt lacks .*\{candidate\}"),
    ("structure.txt", "{question}", r"structure\.txt: unknown prompt file"),
])
def test_a_bad_prompt_file_is_a_one_line_error_naming_it(root, name, text, message):
    (root / "bad").mkdir()
    (root / "bad" / name).write_text(text)
    with pytest.raises(DataError, match=message) as e:
        rollouts(root, "--prompts_dir", "bad")
    assert str(root / "bad" / name) in str(e.value) and "\n" not in str(e.value)
    assert not (root / "runs").exists()  # refused before anything was sampled
