from dreamprm import prompts
from dreamprm.steps import find_steps, num_steps


def test_structured_prompt_has_five_step_guide_example_and_question():
    p = prompts.structured_prompt("How many cubes?", hint="Hint: answer with an integer.", options=None)
    for i, (title, _) in enumerate(prompts.STEPS, 1):
        assert f"Step {i}: {title}" in p
    assert "Final answer: ..." in p and prompts.EXAMPLE_ANSWER in p
    assert p.endswith("Question:\n\nHow many cubes?\nHint: answer with an integer.")


def test_options_are_lettered_once():
    p = prompts.structured_prompt("Which one?", options=["red", "blue"])
    assert p.endswith("Which one?\n(A) red\n(B) blue")
    already = "Which one?\n(A) red\n(B) blue"
    assert prompts.question_text(already, options=["red", "blue"]) == already


def test_completion_prompt_ends_with_the_prefix_to_continue():
    prefix = "Step 1: Restate.\n   - x\n\nStep 2: Look.\n   - y\n\n"
    p = prompts.completion_prompt("What is 2+2?", prefix)
    assert p.endswith("Given input:\n\nWhat is 2+2?\n\nStep 1: Restate.\n   - x\n\nStep 2: Look.\n   - y")
    assert "Your response should be:" in p


def test_example_response_splits_into_five_steps():
    example = "\n\n".join(prompts.EXAMPLE_STEPS) + "\n\n" + prompts.EXAMPLE_ANSWER
    assert num_steps(example) == 5
    assert [s.number for s in find_steps(example)] == [1, 2, 3, 4, 5]


def test_judge_prompt_and_reply_parsing():
    p = prompts.judge_prompt("Q?", "7", "(D) 7")
    assert "Ground truth answer: 7" in p and "Candidate answer: (D) 7" in p
    assert prompts.parse_judge("correct") is True
    assert prompts.parse_judge("Incorrect.") is False
    assert prompts.parse_judge("The answer is wrong") is False
    assert prompts.parse_judge("'correct'") is True
    assert prompts.parse_judge("I cannot tell") is None
