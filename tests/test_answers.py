import time

import pytest

from dreamprm.answers import (
    Verdict,
    check_answer,
    extract_choice,
    normalize_text,
    parse_number,
)

R, W, U = Verdict.RIGHT, Verdict.WRONG, Verdict.UNDECIDED
OPTS = ["12 cm", "15 cm", "18 cm", "20 cm"]


@pytest.mark.parametrize("s, expected", [
    ("**The Cat.**", "cat"),
    ("  Hello   World  ", "hello world"),
    ("An apple.", "apple"),
    ("the", "the"),
    ("a", "a"),
    (r"\boxed{\text{Paris}}", "paris"),
    (r"$\mathrm{NaCl}$", "nacl"),
    (r"\(x+1\)", "x+1"),
    ("`code`", "code"),
    ("__bold__", "bold"),
    ('"Quoted"', "quoted"),
    ("'single'", "single"),
    ("(red)", "red"),
    ("[blue]", "blue"),
    ("(a) and (b)", "(a) and (b)"),
    ("'a' or 'b'", "'a' or 'b'"),
    ("ＡＢＣ", "abc"),  # NFKC full-width
    (r"$\frac{a+b}{2}$", "(a+b)/2"),
    (r"\frac{1}{2}", "1/2"),
    ("", ""),
])
def test_normalize_text(s, expected):
    assert normalize_text(s) == expected


@pytest.mark.parametrize("s, expected", [
    ("12", 12.0),
    ("1,234.5", 1234.5),
    ("1,234", 1234.0),
    ("12,345,678", 12345678.0),
    ("1,23", None),
    ("1234,567", None),
    ("45%", 45.0),
    ("45 percent", 45.0),
    (r"45\%", 45.0),
    ("12 cm", 12.0),
    ("12cm", 12.0),
    ("12 cm^2", 12.0),
    ("5 m/s", 5.0),
    ("30°", 30.0),
    (r"30^\circ", 30.0),
    ("$3.50", 3.5),
    ("-$3.50", -3.5),
    ("€20", 20.0),
    ("-0.5", -0.5),
    ("\u22125", -5.0),
    ("+7", 7.0),
    (".5", 0.5),
    ("3/4", 0.75),
    ("-3/4", -0.75),
    (r"\frac{3}{4}", 0.75),
    (r"-\dfrac{1}{2}", -0.5),
    (r"\boxed{\frac{3}{4}}", 0.75),
    ("1/0", None),
    ("1e-3", 0.001),
    ("2.5E3", 2500.0),
    (r"3 \times 10^{-3}", 0.003),
    ("x = 7", 7.0),
    ("AB = 5 cm", 5.0),
    ("2+3=5", None),
    ("about 12", 12.0),
    ("approximately 3.5", 3.5),
    ("The answer is 12", 12.0),
    ("(12)", 12.0),
    ("12.", 12.0),
    (r"\boxed{42}", 42.0),
    ("$7$", 7.0),
    ("3 and 4", None),
    ("between 2 and 5", None),
    ("12 or more", None),
    ("2.5 million", None),
    ("A", None),
    ("", None),
    ("(B) 12", None),
    ("12 cm by 5 cm", None),
    ("1e999", None),
    ("9" * 500, None),
])
def test_parse_number(s, expected):
    assert parse_number(s) == expected


@pytest.mark.parametrize("answer, options, expected", [
    ("B", None, "B"),
    ("b", None, "B"),
    ("(B)", None, "B"),
    ("[C]", None, "C"),
    ("B.", None, "B"),
    ("B)", None, "B"),
    ("B. 12 cm", None, "B"),
    ("B: some text", None, "B"),
    ("(B) 15 cm", OPTS, "B"),
    ("Option B", None, "B"),
    ("option (B)", None, "B"),
    ("Option: d", OPTS, "D"),
    ("The answer is B", None, "B"),
    ("The correct answer is (C).", OPTS, "C"),
    ("the answer is c", OPTS, "C"),
    ("**B**", None, "B"),
    ("The answer is **D**", OPTS, "D"),
    (r"\boxed{B}", None, "B"),
    (r"so the result is \boxed{\text{C}}", None, "C"),
    ("15 cm", OPTS, "B"),
    ("15 CM.", OPTS, "B"),
    ("15", OPTS, "B"),
    ("Apple", ["Apple", "Pear"], "A"),
    ("a pear", ["An apple", "A pear"], "B"),
    ("15", ["15 cm", "15 m"], None),  # number matches two options
    ("A or B", None, None),
    ("A or B", OPTS, None),
    ("(A) or (B)", OPTS, None),
    ("Option A, not option B", None, None),
    ("E", OPTS, None),
    ("(F)", OPTS, None),
    ("Apple", None, None),
    ("Apple", OPTS, None),
    ("the answer is a triangle", None, None),
    ("I think B", None, None),
    ("options", None, None),
    ("13 cm", OPTS, None),
    ("", OPTS, None),
    ("e.g. something", None, None),
])
def test_extract_choice(answer, options, expected):
    assert extract_choice(answer, options) == expected


@pytest.mark.parametrize("pred, truth, options, expected", [
    # no final answer
    (None, "B", None, W),
    ("", "12", None, W),
    ("   ", "yes", None, W),
    # multiple choice, truth letter
    ("B", "B", None, R),
    ("(b)", "B", None, R),
    ("B. 15 cm", "(B)", OPTS, R),
    ("The answer is C", "B", OPTS, W),
    (r"\boxed{B}", "B", OPTS, R),
    ("**A**", "B", OPTS, W),
    ("15 cm", "B", OPTS, R),
    ("12 cm", "B", OPTS, W),
    ("15", "B", OPTS, R),
    ("A or B", "B", OPTS, U),
    ("E", "B", OPTS, U),
    ("no idea", "B", None, U),
    ("12 cm", "B", None, U),
    # multiple choice, truth given as option text
    ("B", "15 cm", OPTS, R),
    ("A", "15 cm", OPTS, W),
    ("15 cm", "15 cm", OPTS, R),
    # numeric
    ("12", "12", None, R),
    ("12.0 cm", "12", None, R),
    ("1,234", "1234", None, R),
    ("$3.50", "3.5", None, R),
    ("-0.5", "-1/2", None, R),
    (r"\frac{3}{4}", "0.75", None, R),
    ("1e-3", "0.001", None, R),
    ("x = 7", "7", None, R),
    ("13", "12", None, W),
    ("-12", "12", None, W),
    ("seven", "7", None, U),
    ("3 and 4", "3", None, U),
    # precision rounding
    ("1.4142", "1.41", None, R),
    ("1.4", "1.41", None, W),
    ("1.415", "1.41", None, W),
    ("3.4", "3", None, W),
    ("3.0004", "3", None, R),
    # percent both ways
    ("45%", "0.45", None, R),
    ("45%", "45", None, R),
    ("0.45", "45%", None, R),
    ("45", "45%", None, R),
    ("45%", "45%", None, R),
    ("4500", "45%", None, W),
    ("0.45%", "0.45", None, R),
    ("45%", "4500", None, W),
    # yes / no
    ("Yes", "yes", None, R),
    ("yes, because the bar is taller", "Yes", None, R),
    ("No.", "yes", None, W),
    ("True", "yes", None, R),
    ("false", "No", None, R),
    ("maybe", "yes", None, U),
    ("not sure", "no", None, U),
    # free text
    ("The Eiffel Tower.", "eiffel tower", None, R),
    ("**Paris**", "paris", None, R),
    (r"\boxed{\text{Paris}}", "Paris", None, R),
    ("PARIS", "  paris  ", None, R),
    ("London", "Paris", None, U),
    ("x", "y", None, U),
    # garbage input does not raise
    ("\x00\uffff\\boxed{", "B", None, U),
    ("{{{{}}", "12", None, U),
    ("$$$", "yes", None, U),
    ("\\frac{", "text", None, U),
])
def test_check_answer(pred, truth, options, expected):
    assert check_answer(pred, truth, options) is expected


@pytest.mark.parametrize("pred, expected", [
    ("1001", R),      # |1| <= 1e-3 * 1000
    ("999", R),
    ("1001.5", W),
    ("998.9", W),
])
def test_rel_tol_boundary(pred, expected):
    assert check_answer(pred, "1000", rel_tol=1e-3) is expected


def test_rel_tol_is_configurable():
    assert check_answer("105", "100", rel_tol=0.05) is R
    assert check_answer("105", "100", rel_tol=0.01) is W


def test_verdict_values():
    assert [v.value for v in Verdict] == ["right", "wrong", "undecided"]
    assert Verdict.RIGHT == "right"


@pytest.mark.parametrize("junk", [
    "\\boxed{" * 200,
    "}" * 1000,
    "$" * 1001,
    "a" * 100_000,
    "(" * 5000 + "1" + ")" * 5000,
    "1," * 5000,
    "option " * 2000,
    "\U0001F600 \u200b \ufeff",
    r"\frac{\frac{1}{2}}{3}",
], ids=lambda junk: f"len{len(junk)}")
def test_garbage_is_fast_and_never_raises(junk):
    start = time.perf_counter()
    for options in (None, OPTS):
        assert check_answer(junk, "B", options) in (R, W, U)
        assert check_answer(junk, "12", options) in (R, W, U)
        assert check_answer(junk, "free text", options) in (R, W, U)
        extract_choice(junk, options)
    assert isinstance(normalize_text(junk), str)
    parse_number(junk)
    assert time.perf_counter() - start < 2.0


def test_non_string_inputs():
    assert check_answer(12, 12) is R
    assert check_answer("3", 4) is W
    assert check_answer("B", "B", options=[1, 2, 3]) is R
