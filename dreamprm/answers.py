"""Answer extraction and rule-based checking (SPEC section 2, stage 4 "Judge").

This is the single definition of "right" used by MC labelling, meta data and BoN scoring.
`check_answer` returns UNDECIDED whenever the rules cannot decide, so that the LLM judge is
asked only for those cases. Option letters, plain numbers, yes/no and exact strings are this module's own
rules; a free-form mathematical answer (LaTeX, an expression, an interval, a set) is compared by HF's
`math-verify` (`free_form="math_verify"`, the default; `"rules"` keeps the exact-string rule alone).
"""
from __future__ import annotations

import enum
import math
import re
import threading
import unicodedata
from dataclasses import dataclass


class Verdict(str, enum.Enum):
    RIGHT = "right"
    WRONG = "wrong"
    UNDECIDED = "undecided"


# --- shared cleaning -------------------------------------------------------------------------

_DASHES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2012": "-"})
_MARKDOWN = re.compile(r"\*\*|__|`+")
_WRAPPER = re.compile(
    r"\\(?:boxed|fbox|text|textbf|textit|textrm|mathrm|mathbf|mathit|operatorname)\s*\{")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SIMPLE = re.compile(r"-?[\w.]+")
_DOLLAR_PAIR = re.compile(r"\$\$?([^$]*?)\$\$?")
_LATEX_SUBS = [
    (re.compile(r"\\[()\[\]]"), " "),
    (re.compile(r"\\(?:left|right)\b"), ""),
    (re.compile(r"\^\s*\{?\s*\\circ\s*\}?"), "°"),
    (re.compile(r"\\(?:circ|degree)\b"), "°"),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\\$"), "$"),
    (re.compile(r"\\(?:[,;:! ]|quad\b|qquad\b)"), " "),
]
_WS = re.compile(r"\s+")
_MAX_STRIP_ROUNDS = 8
_ARTICLE = re.compile(r"^(?:a|an|the)\s+")
_PAIRS = {"(": ")", "[": "]", "{": "}", '"': '"', "'": "'", "\u201c": "\u201d",
          "\u2018": "\u2019", "\u00ab": "\u00bb", "*": "*"}


def _unwrap(s: str) -> str:
    """Replace \\boxed{x}, \\text{x}, ... by x, with balanced braces (handles nesting)."""
    while m := _WRAPPER.search(s):
        depth, i = 1, m.end()
        while i < len(s) and depth:
            depth += {"{": 1, "}": -1}.get(s[i], 0)
            i += 1
        if depth:  # unbalanced: drop the command only
            s = s[:m.start()] + s[m.end():]
        else:
            s = s[:m.start()] + s[m.end():i - 1] + s[i:]
    return s


def _frac(m: re.Match) -> str:
    a, b = m.group(1).strip(), m.group(2).strip()
    # Parenthesise compound parts so that \frac{a+b}{2} does not become equal to "a+b/2".
    a = a if _SIMPLE.fullmatch(a) else f"({a})"
    b = b if _SIMPLE.fullmatch(b) else f"({b})"
    return f"{a}/{b}"


def _clean(s: object) -> str:
    s = unicodedata.normalize("NFKC", str(s)).translate(_DASHES)
    s = _MARKDOWN.sub("", s)
    s = _unwrap(s)
    s = _FRAC.sub(_frac, s)
    s = _DOLLAR_PAIR.sub(r"\1", s)
    for pattern, repl in _LATEX_SUBS:
        s = pattern.sub(repl, s)
    return _WS.sub(" ", s).strip()


def _strip_pair(s: str) -> str:
    """Remove one pair of surrounding quotes/brackets if they enclose the whole string."""
    if len(s) < 2 or _PAIRS.get(s[0]) != s[-1]:
        return s
    open_, close, inner = s[0], s[-1], s[1:-1]
    if open_ == close:
        return s if open_ in inner else inner.strip()
    depth = 0
    for ch in inner:
        depth += (ch == open_) - (ch == close)
        if depth < 0:
            return s
    return inner.strip() if depth == 0 else s


def normalize_text(s: str) -> str:
    s = _clean(s).lower()
    # A few rounds cover "(**The answer.**)"; unbounded rounds would be quadratic on junk.
    for _ in range(_MAX_STRIP_ROUNDS):
        prev = s
        s = _strip_pair(s.rstrip(".\u3002").strip())
        s = _ARTICLE.sub("", s)
        if s == prev:
            break
    return s


# --- numbers ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Number:
    value: float
    percent: bool
    decimals: int  # digits after the decimal point as written (0 for fractions / exponents)


_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_VALUE = re.compile(
    rf"([+-]?)\s*[$€£¥]?\s*([+-]?)({_NUM})(?:\s*/\s*({_NUM})|e([+-]?\d+))?(.*)", re.S)
_SCI = re.compile(r"(?<=\d)\s*(?:\\times|\\cdot|×|·|\*)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?")
_PREFIX = re.compile(
    r"^(?:(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)?\s*"
    r"|(?:about|approximately|approx\.?|around|roughly|~)\s*)+")
_PERCENT = re.compile(r"\s*(?:%|per\s*cent\b)")
_SUPERSCRIPT = re.compile(r"\^\s*\{?\s*\d\s*\}?|[²³]")
_UNIT_TOKEN = re.compile(r"(?:[^\W\d_]|[°'\"/.])+")
_DIGIT = re.compile(r"\d")
# Words after a number that change its meaning: "2.5 million", "3 to 4", "12 or more".
_BAD_UNIT_WORDS = {"and", "or", "to", "plus", "minus", "times", "more", "less", "than", "over",
                   "under", "hundred", "thousand", "million", "billion", "trillion", "dozen"}
_MAX_NUMBER_LEN = 200  # longer strings are not "essentially one number"


def _parse_tail(tail: str) -> bool | None:
    """Percent flag if `tail` is only a percent sign and/or a short unit, else None."""
    m = _PERCENT.match(tail)
    rest = _SUPERSCRIPT.sub("", tail[m.end():] if m else tail).strip().rstrip(".,;:!")
    tokens = rest.split()
    if len(tokens) > 3 or any(not _UNIT_TOKEN.fullmatch(t) or t.strip(".") in _BAD_UNIT_WORDS
                              for t in tokens):
        return None
    return bool(m)


def _parse(s: object) -> _Number | None:
    s = _clean(s).lower()
    if len(s) > _MAX_NUMBER_LEN:
        return None
    s = s.replace("≈", "=")
    if s.count("=") == 1:
        lhs, rhs = s.split("=")
        if not _DIGIT.search(lhs):  # "x = 7", but not "2+3=5"
            s = rhs
    s = _strip_pair(_PREFIX.sub("", _strip_pair(s.strip())))
    s = _SCI.sub(r"e\1", s)
    m = _VALUE.fullmatch(s)
    if not m:
        return None
    sign1, sign2, a, b, exp, tail = m.groups()
    if sign1 and sign2:
        return None
    percent = _parse_tail(tail)
    if percent is None:
        return None
    a = a.replace(",", "")
    if b is not None:
        den = float(b.replace(",", ""))
        if den == 0:
            return None
        value, decimals = float(a) / den, 0
    elif exp is not None:
        value, decimals = float(f"{a}e{exp}"), 0
    else:
        value, decimals = float(a), len(a.partition(".")[2])
    if not math.isfinite(value):
        return None
    return _Number(-value if "-" in (sign1, sign2) else value, percent, decimals)


def parse_number(s: str) -> float | None:
    """The single number `s` stands for (units, currency, % sign dropped), else None."""
    n = _parse(s)
    return None if n is None else n.value


def _numbers_match(p: _Number, t: _Number, rel_tol: float) -> bool:
    candidates = [(t.value, t.decimals)]
    # Percent rule: when only one side has a % sign, "45%" may stand for 45 or for 0.45.
    if p.percent and not t.percent:
        candidates.append((t.value * 100, max(t.decimals - 2, 0)))
    elif t.percent and not p.percent:
        candidates.append((t.value / 100, t.decimals + 2))
    for v, d in candidates:
        if abs(p.value - v) <= rel_tol * max(abs(v), 1e-12):
            return True
        # MathVista-style precision: truth "1.41" accepts 1.4142.
        if d >= 1 and round(p.value, d) == round(v, d):
            return True
    return False


# --- multiple choice -------------------------------------------------------------------------

_LONE = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:)]?")
_LEADING = re.compile(r"[(\[]?([A-Za-z])[)\].:](?=\s)")
_PAREN = re.compile(r"\(([A-Z])\)")
_KEYWORD = re.compile(r"(?i:\b(?:option|choice)\b)\s*[:\-]?\s*\(?([A-Za-z])\)?(?![A-Za-z0-9])")
# "answer is B" / "answer: b." but not "answer is a triangle".
_ANSWER_IS = re.compile(
    r"(?i:\banswer(?:\s+is)?)\s*[:\-]?\s*\(?"
    r"(?:([A-Z])|([a-z])(?=\)?\s*(?:$|[.,;:!])))\)?(?![A-Za-z0-9])")
_BOXED = re.compile(
    r"\\boxed\s*\{\s*(?:\\(?:text|textbf|mathrm|mathbf)\s*\{)?\s*\(?([A-Za-z])\)?\s*\}?\s*\}")
_TRUTH_LETTER = re.compile(r"\(?([A-Za-z])\)?\.?")


def _letters_in(raw: str, s: str) -> set[str]:
    found = [m.group(1) for m in _BOXED.finditer(unicodedata.normalize("NFKC", raw))]
    if m := _LEADING.match(s):
        found.append(m.group(1))
    found += _PAREN.findall(s) + _KEYWORD.findall(s)
    found += [a or b for a, b in _ANSWER_IS.findall(s)]
    return {x.upper() for x in found}


def _match_option_text(answer: str, options: list[str]) -> str | None:
    norm = normalize_text(answer)
    if norm:
        hits = [i for i, o in enumerate(options) if normalize_text(o) == norm]
        if hits:
            return chr(65 + hits[0]) if len(hits) == 1 else None
    num = _parse(answer)
    if num is None:
        return None
    hits = [i for i, o in enumerate(options)
            if (x := _parse(o)) is not None and math.isclose(x.value, num.value, abs_tol=1e-12)]
    return chr(65 + hits[0]) if len(hits) == 1 else None


def extract_choice(answer: str, options: list[str] | None = None) -> str | None:
    """The chosen option letter (uppercase), or None when absent, ambiguous or out of range."""
    answer = "" if answer is None else str(answer)
    options = [str(o) for o in options][:26] if options else None
    n = len(options) if options else 26
    s = _clean(answer)
    if m := _LONE.fullmatch(s):
        letters = {m.group(1).upper()}
    else:
        letters = _letters_in(answer, s)
    if len(letters) > 1:
        return None
    if letters and ord(letter := letters.pop()) - 65 < n:
        return letter
    return _match_option_text(answer, options) if options else None


# --- final answer and verdict ----------------------------------------------------------------

_YES_NO = {"yes": True, "true": True, "no": False, "false": False}
_YES_NO_START = re.compile(r"(yes|no|true|false)\b")


def _truth_letter(truth: str, options: list[str] | None) -> str | None:
    m = _TRUTH_LETTER.fullmatch(truth.strip())
    # Without options a lowercase single letter may be a genuine free-text answer ("x").
    if m and (options or m.group(1).isupper()):
        return m.group(1).upper()
    return _match_option_text(truth, options) if options else None


# --- free-form math: math-verify --------------------------------------------------------------

FREE_FORM = ("math_verify", "rules")
_TEXT_ARG = re.compile(r"\\(?:text|textrm|mathrm|operatorname)\s*\{[^{}]*\}")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")
_MATHY = re.compile(r"[\d\\^_=+*/()\[\]{}<>|]")
MAX_FORMULA = 300  # characters: a final answer is short; sympy on a 10,000-character nest takes seconds


def looks_mathematical(s: str) -> bool:
    """A formula rather than words: math-verify reads "red" as r*e*d (and so "red" == "dre"), so an answer with a
    word of two or more letters outside LaTeX commands and \\text{...} (units) is left to the other rules."""
    core = _LATEX_COMMAND.sub(" ", _TEXT_ARG.sub(" ", s))
    return bool(_MATHY.search(s)) and not _WORD.search(core)


def math_verdict(pred: str, truth: str) -> Verdict:
    """math-verify's verdict on two formulas; UNDECIDED when either is not one or does not parse."""
    if max(len(pred), len(truth)) > MAX_FORMULA or not (looks_mathematical(truth) and looks_mathematical(pred)):
        return Verdict.UNDECIDED
    from math_verify import parse, verify

    # its timeouts are signal alarms, which only the main thread may set
    limit = 5 if threading.current_thread() is threading.main_thread() else None
    wrap = lambda s: s if "$" in s or "\\(" in s or "\\[" in s else f"${s}$"  # noqa: E731  (LaTeX needs delimiters)
    gold, got = parse(wrap(truth), parsing_timeout=limit), parse(wrap(pred), parsing_timeout=limit)
    if not gold or not got:
        return Verdict.UNDECIDED
    return Verdict.RIGHT if verify(gold, got, timeout_seconds=limit) else Verdict.WRONG


def check_answer(pred: str | None, truth: str, options: list[str] | None = None,
                 rel_tol: float = 1e-3, free_form: str = "math_verify") -> Verdict:
    if pred is None or not str(pred).strip():
        return Verdict.WRONG  # no final answer is a wrong answer
    pred, truth = str(pred), "" if truth is None else str(truth)
    options = [str(o) for o in options] if options else None

    letter = _truth_letter(truth, options)
    if letter is not None:
        got = extract_choice(pred, options)
        if got is None:
            return Verdict.UNDECIDED
        return Verdict.RIGHT if got == letter else Verdict.WRONG

    t = _parse(truth)
    if t is not None:
        p = _parse(pred)
        if p is None:  # "3x" reads as the number 3 with a unit: a formula against it goes to math-verify
            formula = free_form == "math_verify" and re.search(r"[A-Za-z\\]", truth)
            return math_verdict(pred.strip(), truth.strip()) if formula else Verdict.UNDECIDED
        return Verdict.RIGHT if _numbers_match(p, t, rel_tol) else Verdict.WRONG

    nt, np_ = normalize_text(truth), normalize_text(pred)
    if nt in _YES_NO:
        m = _YES_NO_START.match(np_)
        if m is None:
            return Verdict.UNDECIDED
        return Verdict.RIGHT if _YES_NO[m.group(1)] == _YES_NO[nt] else Verdict.WRONG
    if nt and nt == np_:
        return Verdict.RIGHT
    if free_form == "math_verify":
        return math_verdict(pred.strip(), truth.strip())
    return Verdict.UNDECIDED
