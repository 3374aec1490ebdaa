"""Free-form math answers through HF's math-verify (dreamprm/answers.py `math_verdict`), beside the repo's own
rules; and the README's table of the fixture cases where the two disagree, checked against what they do now."""
from pathlib import Path

import pytest

from dreamprm.answers import Verdict, check_answer, looks_mathematical

R, W, U = Verdict.RIGHT, Verdict.WRONG, Verdict.UNDECIDED
# (kind, ground truth, candidate's final answer, verdict with math-verify)
CASES = [
    ("fraction", r"\frac{1}{2}", "1/2", R),
    ("fraction", r"\frac{1}{2}", "0.5", R),
    ("fraction", r"\dfrac{3}{4}", r"\frac{6}{8}", R),
    ("fraction", r"\frac{2}{3}", "0.6667", R),
    ("fraction", r"\frac{2}{3}", r"\frac{3}{2}", W),
    ("fraction", r"-\frac{1}{3}", r"\frac{-1}{3}", R),
    ("latex", r"\sqrt{12}", r"2\sqrt{3}", R),
    ("latex", r"2\sqrt{3}", r"\sqrt{3}", W),
    ("latex", r"\frac{\pi}{3}", r"\pi/3", R),
    ("latex", r"3\pi", "9.42", W),
    ("latex", r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}", R),
    ("latex", r"\infty", r"\infty", R),
    ("latex", r"\frac{\pi}{4}", r"45^\circ", W),
    ("expression", "2x+1", "1+2x", R),
    ("expression", "x^2-1", "(x-1)(x+1)", R),
    ("expression", "x^2-1", "(x-1)^2", W),
    ("expression", "y=2x+1", "y = 1 + 2x", R),
    ("expression", "x=2", "2", R),
    ("expression", r"a^{2}+b^{2}", "b^2+a^2", R),
    ("expression", "2(x+3)", "2x+6", R),
    ("expression", "3x", "x+3", W),
    ("set", r"\{1,2\}", r"\{2,1\}", R),
    ("set", r"\{1,2\}", r"\{1,3\}", W),
    ("interval", "(1,2]", "(1, 2]", R),
    ("interval", "(1,2]", "[1,2]", W),
    ("interval", r"(-\infty, 3)", r"(-\infty,3)", R),
    ("interval", "[0,1)", "[0,1]", W),
    ("unit", r"10\text{ cm}", "10", R),
    ("unit", r"5\,\text{m}", "5", R),
    ("unit", r"50\%", "0.5", R),
    ("unit", r"12\text{ cm}^2", "13", W),
    ("words", "Paris", "paris", R),      # the repo's own rule: equal after normalisation
    ("words", "red", "dre", U),          # math-verify would read r*e*d == d*r*e: words are not formulas
    ("words", "2x+1", "two x plus one", U),  # a formula against words: left to the judge
]


@pytest.mark.parametrize("kind, truth, pred, verdict", CASES, ids=[f"{c[0]}:{c[1]}~{c[2]}" for c in CASES])
def test_free_form_answers(kind, truth, pred, verdict):
    assert check_answer(pred, truth) is verdict


def test_letters_and_plain_numbers_keep_the_repos_own_rules():
    assert check_answer("(B)", "B", ["1", "2"]) is R and check_answer("A", "B", ["1", "2"]) is W
    assert check_answer("7.50", "7.5") is R and check_answer("7.6", "7.5") is W
    assert check_answer("x^2", "x^2", free_form="rules") is R and check_answer("x*x", "x^2", free_form="rules") is U
    assert not looks_mathematical("red") and looks_mathematical(r"10\text{ cm}") and looks_mathematical("(1,2]")


def disagreements():
    """The fixture cases where the old rules (free_form="rules") and the math-verify default give another verdict."""
    out = []
    for kind, truth, pred, _ in CASES:
        old, new = check_answer(pred, truth, free_form="rules"), check_answer(pred, truth)
        if old is not new:
            out.append((kind, truth, pred, old.value, new.value))
    return out


def test_the_readme_lists_exactly_the_cases_where_the_rules_and_math_verify_disagree():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("<!-- math-verify table -->")[1].split("<!-- end of math-verify table -->")[0]
    rows = [[c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| ") and not line.startswith(("| kind", "|---"))]
    assert [tuple(r) for r in rows] == [(k, t, p, o, n) for k, t, p, o, n in disagreements()]
    assert len(CASES) >= 30 and len(rows) >= 10
