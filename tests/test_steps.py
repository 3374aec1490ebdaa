import pytest

from dreamprm.steps import (
    FINAL_ANSWER,
    Step,
    find_final_answer,
    find_steps,
    final_answer_text,
    has_final_answer,
    num_steps,
    step_prefix,
    step_prefixes,
)

CANONICAL = (
    "Step 1: Restate the question. What is 6 x 7?\n"
    "Step 2: Gather evidence. The image shows 6 rows of 7 dots.\n"
    "Step 3: Background knowledge. Multiplication counts a grid.\n"
    "Step 4: Reason. 6 x 7 = 42.\n"
    "Step 5: Summarise. There are 42 dots.\n"
    "Final answer: 42"
)


def test_marker_constant():
    assert FINAL_ANSWER == "Final answer:"


def test_canonical_prefixes_exact():
    lines = CANONICAL.split("\n")
    expected = ["\n".join(lines[:k]) + "\n" for k in range(1, 6)]
    assert step_prefixes(CANONICAL) == expected
    assert [step_prefix(CANONICAL, k) for k in range(1, 6)] == expected
    assert step_prefix(CANONICAL, 5) == CANONICAL[: CANONICAL.index("Final answer")]
    assert step_prefix(CANONICAL, 5).endswith("There are 42 dots.\n")


def test_canonical_steps_fields():
    steps = find_steps(CANONICAL)
    assert [s.number for s in steps] == [1, 2, 3, 4, 5]
    assert steps[0] == Step(1, 0, CANONICAL.index("Step 2"), CANONICAL[: CANONICAL.index("Step 2")])
    assert steps[2].start == CANONICAL.index("Step 3")
    assert steps[4].end == CANONICAL.index("Final answer")
    assert steps[4].text == "Step 5: Summarise. There are 42 dots.\n"
    assert num_steps(CANONICAL) == 5
    assert find_final_answer(CANONICAL) == CANONICAL.index("Final answer")
    assert final_answer_text(CANONICAL) == "42"


# (response, expected step numbers, expected step texts)
STEP_CASES = [
    pytest.param("**Step 1:** a\n**Step 2:** b\nFinal answer: c",
                 [1, 2], ["**Step 1:** a\n", "**Step 2:** b\n"], id="bold-colon-inside"),
    pytest.param("**Step 1: Restate**\nx\n**Step 2: Evidence**\ny",
                 [1, 2], ["**Step 1: Restate**\nx\n", "**Step 2: Evidence**\ny"], id="bold-whole-line"),
    pytest.param("### Step 1\na\n### Step 2.\nb\n",
                 [1, 2], ["### Step 1\na\n", "### Step 2.\nb\n"], id="heading"),
    pytest.param("step 1 restate\nstep 2 evidence",
                 [1, 2], ["step 1 restate\n", "step 2 evidence"], id="lowercase"),
    pytest.param("STEP 1: a\nSTEP 4: b",
                 [1, 4], ["STEP 1: a\n", "STEP 4: b"], id="uppercase"),
    pytest.param("Step1: a\nStep2: b",
                 [1, 2], ["Step1: a\n", "Step2: b"], id="no-space"),
    pytest.param("- Step 1 - a\n* Step 2) b\n> Step 3. c\n+ Step 4:** d",
                 [1, 2, 3, 4], ["- Step 1 - a\n", "* Step 2) b\n", "> Step 3. c\n", "+ Step 4:** d"],
                 id="bullets-quote-suffixes"),
    pytest.param("__Step 1__: a\n  Step 2: indented",
                 [1, 2], ["__Step 1__: a\n", "  Step 2: indented"], id="underscore-bold-indent"),
    pytest.param("Step 1: a\nStep 2: b\nStep 4: d\nFinal answer: x",
                 [1, 2, 4], ["Step 1: a\n", "Step 2: b\n", "Step 4: d\n"], id="missing-step-3"),
    pytest.param("Step 1: a\nStep 2: b\nStep 2: again\nStep 3: c",
                 [1, 2, 3], ["Step 1: a\n", "Step 2: b\nStep 2: again\n", "Step 3: c"], id="repeated"),
    pytest.param("Step 1: a\nStep 2: b\nStep 3: c\nStep 1: restart",
                 [1, 2, 3], ["Step 1: a\n", "Step 2: b\n", "Step 3: c\nStep 1: restart"], id="restart"),
    pytest.param("Step 1: a, as shown in step 2, then step 3: done\nso Step 4 is next",
                 [1], ["Step 1: a, as shown in step 2, then step 3: done\nso Step 4 is next"],
                 id="mid-sentence-mentions"),
    pytest.param("Steps 1-3 are easy.\nStep one: no\nStep 1-3: no\nStep 1.2 no\nStep 1a no",
                 [], [], id="non-headers"),
    pytest.param("Step 0: zero\nStep 1: one",
                 [1], ["Step 1: one"], id="step-zero-ignored"),
    pytest.param("Step 9: a\nStep 10: b\nStep 11: c",
                 [9, 10, 11], ["Step 9: a\n", "Step 10: b\n", "Step 11: c"], id="multi-digit"),
    pytest.param("Step 1: a\nFinal answer: 1\nStep 2: b\nFinal answer: 2",
                 [1, 2], ["Step 1: a\nFinal answer: 1\n", "Step 2: b\n"], id="header-between-markers"),
    pytest.param("Step 1: a\nStep 2: b\nFinal answer: 3\nStep 3: after",
                 [1, 2], ["Step 1: a\n", "Step 2: b\n"], id="header-after-final-ignored"),
    pytest.param("Final answer: 3\nStep 1: after", [], [], id="only-headers-after-final"),
]


@pytest.mark.parametrize("response,numbers,texts", STEP_CASES)
def test_find_steps_table(response, numbers, texts):
    steps = find_steps(response)
    assert [s.number for s in steps] == numbers
    assert [s.text for s in steps] == texts
    assert all(response[s.start:s.end] == s.text for s in steps)
    assert num_steps(response) == len(numbers)


@pytest.mark.parametrize("response", ["", None, "Just an answer with no steps.", "Final answer: 7"])
def test_no_steps(response):
    assert find_steps(response) == []
    assert num_steps(response) == 0
    assert step_prefixes(response) == []


def test_preamble_in_every_prefix():
    r = "Let me think.\n\nStep 1: a\nStep 2: b\nFinal answer: c"
    steps = find_steps(r)
    assert steps[0].start == len("Let me think.\n\n")
    assert step_prefixes(r) == ["Let me think.\n\nStep 1: a\n", "Let me think.\n\nStep 1: a\nStep 2: b\n"]


def test_missing_final_answer_last_prefix_is_whole_response():
    r = "Step 1: a\nStep 2: b\n  trailing  \n"
    assert step_prefix(r, 2) == r
    assert find_final_answer(r) is None
    assert has_final_answer(r) is False
    assert final_answer_text(r) is None


def test_windows_line_endings():
    r = "Step 1: a\r\nStep 2: b\r\nFinal answer: c\r\n"
    assert step_prefixes(r) == ["Step 1: a\r\n", "Step 1: a\r\nStep 2: b\r\n"]
    assert final_answer_text(r) == "c"


def test_multiline_bodies():
    r = "Step 1: first\nmore of one\n\n  - a bullet\nStep 2: second\n\ncontinued\nFinal answer: B"
    steps = find_steps(r)
    assert [s.text for s in steps] == ["Step 1: first\nmore of one\n\n  - a bullet\n",
                                       "Step 2: second\n\ncontinued\n"]


def test_multiple_final_markers_uses_last():
    r = "Step 1: the final answer: maybe 3\nStep 2: check\nFinal answer: 4"
    assert find_final_answer(r) == r.rindex("Final answer")
    assert final_answer_text(r) == "4"
    assert step_prefix(r, 2) == "Step 1: the final answer: maybe 3\nStep 2: check\n"


def test_unicode():
    r = "Step 1: Wiederholen — Fläche ∠ABC = 30°\nStep 2: 求解 x² = 4\nFinal answer: x = ±2 ✓"
    assert [s.number for s in find_steps(r)] == [1, 2]
    assert step_prefix(r, 2) == "Step 1: Wiederholen — Fläche ∠ABC = 30°\nStep 2: 求解 x² = 4\n"
    assert final_answer_text(r) == "x = ±2 ✓"


# (response, expected marker offset)
MARKER_CASES = [
    pytest.param("Step 1: a\n**Final Answer:** 42", 10, id="bold-colon-inside"),
    pytest.param("Step 1: a\n**Final Answer**: 42", 10, id="bold-colon-outside"),
    pytest.param("Step 1: a\nFinal answer : 42", 10, id="space-before-colon"),
    pytest.param("Step 1: a\n### Final answer: 42", 10, id="heading"),
    pytest.param("Step 1: a so the final answer: 42", 17, id="mid-line"),
    pytest.param("Step 1: a\nFINAL   ANSWER: 42", 10, id="upper-spaces"),
    pytest.param("Step 1: a\n###### **Final answer:** 42", 10, id="heading-and-bold"),
    pytest.param("Step 1: a\n_Final answer_: 42", 10, id="italic-underscore"),
    pytest.param("Step 1: a\nFinal answer 42", None, id="no-colon"),
    pytest.param("Step 1: semifinal answer: no", None, id="word-prefix"),
]


@pytest.mark.parametrize("response,offset", MARKER_CASES)
def test_find_final_answer_table(response, offset):
    assert find_final_answer(response) == offset
    assert has_final_answer(response) is (offset is not None)
    if offset is not None:
        assert step_prefix(response, 1) == response[:offset]
        assert not step_prefix(response, 1).rstrip().endswith("*")


# (response, expected extracted answer)
ANSWER_CASES = [
    pytest.param("**Final Answer:** 42", "42", id="bold"),
    pytest.param("**Final Answer**: *B*", "B", id="bold-outside-italic-answer"),
    pytest.param("Final answer: \\boxed{12}", "12", id="boxed"),
    pytest.param("Final answer: $\\frac{1}{2}$", "\\frac{1}{2}", id="dollars"),
    pytest.param("Final answer: $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}", id="dollar-boxed"),
    pytest.param("Final answer: $$x+1$$", "x+1", id="double-dollars"),
    pytest.param("Final answer: \\boxed{a} + \\boxed{b}", "\\boxed{a} + \\boxed{b}", id="two-boxes-kept"),
    pytest.param("Final answer: 42.", "42.", id="trailing-period-kept"),
    pytest.param("Final answer: C\n\nThis is because the image shows a cat.", "C", id="trailing-text"),
    pytest.param("Final answer: first line\nsecond line\n\nexplanation", "first line\nsecond line",
                 id="multi-line-until-blank"),
    pytest.param("Final answer:\n\n  **(A) 3 cm**  \n", "(A) 3 cm", id="answer-on-next-line"),
    pytest.param("Final answer:   ", "", id="empty-after-marker"),
    pytest.param("Final answer: 1\nFinal answer: 2", "2", id="last-marker"),
    pytest.param("No marker here: 42", None, id="absent"),
]


@pytest.mark.parametrize("response,answer", ANSWER_CASES)
def test_final_answer_text_table(response, answer):
    assert final_answer_text(response) == answer


@pytest.mark.parametrize("k", [0, -1, 6, 100])
def test_step_prefix_out_of_range(k):
    with pytest.raises(IndexError, match=f"step {k} out of range: response has 5 step"):
        step_prefix(CANONICAL, k)


def test_step_prefix_no_steps_raises():
    with pytest.raises(IndexError, match="has 0 step"):
        step_prefix("no steps", 1)


ALL_RESPONSES = [CANONICAL] + [p.values[0] for p in STEP_CASES] + [p.values[0] for p in MARKER_CASES]


@pytest.mark.parametrize("response", ALL_RESPONSES)
def test_prefix_invariants(response):
    prefixes = step_prefixes(response)
    assert len(prefixes) == num_steps(response)
    assert all(response.startswith(p) for p in prefixes)
    assert all(len(a) < len(b) for a, b in zip(prefixes, prefixes[1:]))
    marker = find_final_answer(response)
    if prefixes and marker is not None:
        assert len(prefixes[-1]) == marker
