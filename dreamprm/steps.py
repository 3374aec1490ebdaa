"""Step handling for structured-thinking responses: the one definition every stage uses.

A policy response looks like ``Step 1: ...`` .. ``Step 5: ...`` followed by ``Final answer: ...``.
The prefix of step k is the response text up to (not including) the next accepted step header, or,
for the last step, up to the Final-answer marker (SPEC section 2, stage 3).

Prefixes are exact slices ``response[:end]``: trailing whitespace is NOT stripped, so
``response.startswith(step_prefix(response, k))`` always holds and any text before ``Step 1``
(a preamble) is part of every prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FINAL_ANSWER = "Final answer:"

# A header is "Step N" at line start, after optional whitespace and markdown decoration
# (headings, bold, bullets, quotes). The number must not run on into a word, a decimal or a
# range ("Step 1a", "Step 1.2", "Step 1-3"), and "Steps"/"Step one" never match.
_HEADER_RE = re.compile(
    r"^[ \t#>*_+\-]*step[ \t]*([0-9]+)(?![^\W_]|[.\-][0-9])",
    re.IGNORECASE | re.MULTILINE,
)

# The marker may carry a heading and bold/italic decoration on either side of the words
# ("**Final answer:**", "**Final Answer**:", "### Final answer :"). The leading decoration is
# found separately (_LEAD_RE) because a lookbehind or optional prefix in _FINAL_RE makes the
# scan several times slower; it is part of the marker so the last prefix never ends with "**".
_FINAL_RE = re.compile(r"final[ \t]+answer[ \t]*(?:\*\*|__|\*|_)?[ \t]*:", re.IGNORECASE)
_LEAD_RE = re.compile(r"(?:#{1,6}[ \t]+)?(?:\*\*|__|\*|_)?\Z")
_LEAD_WINDOW = 12  # longest possible leading decoration: "###### " + "**" and slack

_BLANK_LINE_RE = re.compile(r"\n[ \t]*\r?\n")
_EMPHASIS = " \t\r\n*_"


@dataclass(frozen=True)
class Step:
    number: int  # the number as written ("Step 3" -> 3)
    start: int  # offset of the header's line start (incl. indentation/decoration)
    end: int  # next accepted header, else the Final-answer marker, else len(response)
    text: str  # response[start:end]


def _last_final_match(response: str) -> tuple[int, int] | None:
    """(start incl. leading decoration, end after the colon) of the last marker, or None."""
    last = None
    for m in _FINAL_RE.finditer(response):
        s = m.start()
        if s == 0 or not response[s - 1].isalnum():  # "semifinal answer:" is no marker
            last = m
    if last is None:
        return None
    lead = _LEAD_RE.search(response, max(0, last.start() - _LEAD_WINDOW), last.start())
    return lead.start(), last.end()


def find_final_answer(response: str) -> int | None:
    """Offset of the LAST Final-answer marker (including its leading decoration), or None."""
    m = _last_final_match(response or "")
    return m[0] if m else None


def has_final_answer(response: str) -> bool:
    return find_final_answer(response) is not None


def find_steps(response: str) -> list[Step]:
    """Accepted step headers before the last Final-answer marker, in order.

    A header counts only if its number is strictly greater than the previous accepted one;
    repeated or restarting numbers stay inside the current step's text.
    """
    if not response:
        return []
    limit = find_final_answer(response)
    if limit is None:
        limit = len(response)
    starts: list[tuple[int, int]] = []
    prev = 0
    for m in _HEADER_RE.finditer(response, 0, limit):
        n = int(m.group(1))
        if n > prev:
            starts.append((n, m.start()))
            prev = n
    steps = []
    for i, (n, start) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else limit
        steps.append(Step(n, start, end, response[start:end]))
    return steps


def num_steps(response: str) -> int:
    return len(find_steps(response))


def step_prefix(response: str, k: int) -> str:
    """Prefix for step k (1-based): response[:end of step k]."""
    steps = find_steps(response)
    if not 1 <= k <= len(steps):
        raise IndexError(f"step {k} out of range: response has {len(steps)} step(s)")
    return response[: steps[k - 1].end]


def step_prefixes(response: str) -> list[str]:
    return [response[: s.end] for s in find_steps(response)]


def _unwrap(text: str) -> str:
    """Remove one surrounding $...$, $$...$$ or \\boxed{...} at a time, while any applies."""
    while True:
        if len(text) >= 4 and text.startswith("$$") and text.endswith("$$"):
            text = text[2:-2].strip()
        elif len(text) >= 2 and text.startswith("$") and text.endswith("$"):
            text = text[1:-1].strip()
        elif text.startswith("\\boxed{") and text.endswith("}") and _closes_at_end(text, 6):
            text = text[7:-1].strip()
        else:
            return text


def _closes_at_end(text: str, open_idx: int) -> bool:
    # "\boxed{a} + \boxed{b}" starts and ends right but is not one box.
    depth = 0
    for i in range(open_idx, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False


def final_answer_text(response: str) -> str | None:
    """Text after the last marker, up to the first blank line, without surrounding whitespace,
    markdown emphasis, $...$ or \\boxed{...}. "" if the marker has nothing after it, None if absent.
    Everything else (e.g. a trailing period) is kept."""
    m = _last_final_match(response or "")
    if m is None:
        return None
    rest = response[m[1]:].lstrip(_EMPHASIS)
    blank = _BLANK_LINE_RE.search(rest)
    if blank:
        rest = rest[: blank.start()]
    return _unwrap(rest.strip(_EMPHASIS))
