"""The prompts of the method (SPEC stage 2 and the judge of stage 4): three text templates, each replaceable.

`structured_prompt` asks the policy for the five-step chain of thought ending in `Final answer: ...`;
`completion_prompt` gives it a partial chain (a tree node's step prefix) to continue, which is how MC
estimation rolls a prefix out; `judge_prompt` asks a text-only LLM whether a candidate answer matches the
ground truth. The image is not part of these strings: the chat template of the model inserts it.

The texts are files, `dreamprm/templates/{structured,completion,judge}.txt`, written in our own words with
the structure and rules of the authors' released prompts (coder-qicao/DreamPRM 515682f). `--prompts_dir DIR`
(every sampling stage) makes the files found in DIR replace them, so the exact original text can be dropped
in. Placeholders, the only text that is substituted:

    structured.txt  {question}                              the question text (`question_text`)
    completion.txt  {question} {prefix}                     the node's question text, its step prefix as is
    judge.txt       {question} {ground_truth} {candidate}

Every placeholder of a template must appear in it and no other `{name}` may; `{{name}}` writes a literal
`{name}`; any other brace is plain text (LaTeX is safe). One trailing newline of a file is dropped (editors
add it). Hint and options are not placeholders: `question_text` folds them into {question} (question,
lettered options, hint), which puts the hint after the question as the original does.
"""
from __future__ import annotations

import re
from pathlib import Path

from .io import DataError

SHIPPED = Path(__file__).parent / "templates"
PLACEHOLDERS = {"structured": ("question",), "completion": ("question", "prefix"),
                "judge": ("question", "ground_truth", "candidate")}

# The step titles and bullets the shipped templates spell out (the SIMULATED policy writes these headers).
STEPS = (
    ("Restate what is asked.",
     ("Say in your own words what the question wants to know, making it clearer where needed.",)),
    ("Collect the evidence in the image.",
     ("Describe the visual details that bear on the question, such as objects, people, places or how they "
      "interact.",)),
    ("Note the background knowledge required.",
     ("Write down the general facts, assumptions or outside knowledge the question depends on.",)),
    ("Reason from the evidence.",
     ("Combine what the image, the text and the background knowledge tell you.",
      "Explain how these pieces together lead toward an answer.")),
    ("Sum up and conclude.",
     ("Give a short, direct answer to the question and point to the evidence and reasoning behind it.",)),
)

_FIELD = re.compile(r"\{\{([A-Za-z_]\w*)\}\}|\{([A-Za-z_]\w*)\}")  # {{name}} literal, {name} placeholder
_active: dict[str, str] = {}  # prompt name -> template text, set by load_templates


def read_template(path: Path, name: str) -> str:
    """A template file, checked: a one-line DataError naming the file on an unknown or missing placeholder."""
    try:
        text = Path(path).read_text(encoding="utf-8").removesuffix("\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: the {name} prompt is not UTF-8 text (byte {e.start})") from None
    want = PLACEHOLDERS[name]
    found = {m[2] for m in _FIELD.finditer(text) if m[2]}
    unknown = sorted(found - set(want))
    if unknown:
        raise DataError(f"{path}: unknown placeholder {{{unknown[0]}}} in the {name} prompt (it takes "
                        f"{', '.join('{' + w + '}' for w in want)}; write {{{{{unknown[0]}}}}} for literal braces)")
    missing = [w for w in want if w not in found]
    if missing:
        raise DataError(f"{path}: the {name} prompt lacks the placeholder {{{missing[0]}}} (it takes "
                        f"{', '.join('{' + w + '}' for w in want)})")
    return text


def fill(template: str, **values: str) -> str:
    """Substitute placeholders in one pass, so braces inside the values are never read as placeholders."""
    return _FIELD.sub(lambda m: "{" + m[1] + "}" if m[1] else values[m[2]], template)


def load_templates(directory: str | Path | None = None) -> dict[str, Path]:
    """Use the templates in `directory` (any of structured.txt, completion.txt, judge.txt; a missing one
    keeps the shipped default) for every prompt built from now on; None restores the shipped ones.
    Returns prompt name -> the file in use."""
    files = {name: SHIPPED / f"{name}.txt" for name in PLACEHOLDERS}
    if directory is not None:
        directory = Path(directory)
        if not directory.is_dir():
            raise DataError(f"{directory}: no such prompts directory")
        for path in sorted(directory.glob("*.txt")):
            if path.stem not in PLACEHOLDERS:
                raise DataError(f"{path}: unknown prompt file (a prompts directory holds "
                                f"{', '.join(n + '.txt' for n in PLACEHOLDERS)})")
            files[path.stem] = path
    _active.clear()
    _active.update({name: read_template(path, name) for name, path in files.items()})
    return files


def template(name: str) -> str:
    if not _active:
        load_templates()
    return _active[name]


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
    return fill(template("structured"), question=question_text(question, hint, options))


def completion_prompt(question: str, prefix: str, hint: str | None = None,
                      options: list[str] | None = None) -> str:
    """Ask the policy to continue a partial chain of thought (a tree node) through to the final answer.

    The prefix goes in as it is, after the question and a blank line, as the original concatenates them.
    The generated text is the continuation only; `prefix + continuation` is the full rollout.
    """
    return fill(template("completion"), question=question_text(question, hint, options), prefix=prefix)


def judge_prompt(question: str, ground_truth: str, candidate: str) -> str:
    """The LLM judge's prompt: verify a match, never solve the question."""
    return fill(template("judge"), question=question, ground_truth=str(ground_truth), candidate=str(candidate))


def parse_judge(reply: str) -> bool | None:
    """The judge's verdict: True, False, or None when the reply says neither."""
    words = re.findall(r"[a-z]+", reply.lower())
    for w in words:  # the first verdict word wins; 'incorrect' is checked as a whole word
        if w == "correct":
            return True
        if w in ("incorrect", "wrong"):
            return False
    return None
