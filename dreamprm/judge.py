"""Deciding whether a final answer is right (SPEC stage 4, "Judge"): rules first, an LLM only when they can't.

    judge = Judge("Qwen/Qwen2.5-7B-Instruct")          # or Judge(None): undecided counts as wrong
    verdicts = judge([JudgeItem(question, answer, truth, options), ...])   # [(bool, "rule"|"judge"|"none")]
    print(judge.report())

`answers.check_answer` settles most answers (letters, numbers with tolerance, exact strings). What it leaves
UNDECIDED goes to the LLM judge in one greedy batch per call, with `prompts.judge_prompt`/`parse_judge`.
The judge model is loaded on first need, so a run the rules fully decide never loads it. A reply that says
neither "correct" nor "incorrect" counts as wrong, with source "none", and is counted, as is every
undecided answer when no judge is configured.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from .answers import Verdict, check_answer
from .prompts import judge_prompt, parse_judge


@dataclass(frozen=True)
class JudgeItem:
    question: str  # the question text (the judge sees it for context, never to solve it)
    answer: str | None  # the candidate's final answer; None when the response has none
    truth: str
    options: tuple | list | None = None


def no_judge(name: str | None) -> bool:
    return name is None or str(name).strip().lower() in ("", "none")


class Judge:
    def __init__(self, model: str | None = None, device: str | None = None, precision: str = "auto",
                 batch_size: int = 16, max_new_tokens: int = 8,
                 reply_fn: Callable[[list[str]], list[str]] | None = None, free_form: str = "math_verify"):
        """`model`: hub id or directory of the LLM judge, or None/"none". `reply_fn` (prompts -> replies)
        replaces the model, e.g. in tests or for an API judge."""
        self.model_name = None if no_judge(model) else str(model)
        self.device, self.precision = device, precision
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.reply_fn = reply_fn
        self.free_form = free_form  # answers.FREE_FORM: math-verify for formulas, or the exact-string rule alone
        self._llm = None
        self._cache: dict[tuple, bool | None] = {}  # MC rollouts repeat the same answers many times
        self.stats: Counter = Counter()

    @property
    def has_llm(self) -> bool:
        return self.reply_fn is not None or self.model_name is not None

    def _replies(self, texts: list[str]) -> list[str]:
        if self.reply_fn is not None:
            return list(self.reply_fn(texts))
        from .models import generate, load_judge

        if self._llm is None:
            try:
                self._llm = load_judge(self.model_name, self.device, self.precision)
            except OSError as e:
                raise OSError(f"could not load the LLM judge {self.model_name!r} ({e}); pass --judge none to "
                              "count answers the rules cannot decide as wrong") from e
        model, tok = self._llm
        out = generate(model, tok, [(None, t) for t in texts], n=1, temperature=0,
                       max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, desc="judge",
                       progress=len(texts) > self.batch_size)
        return [o[0] for o in out]

    def __call__(self, items: list[JudgeItem]) -> list[tuple[bool, str]]:
        results: list[tuple[bool, str] | None] = [None] * len(items)
        undecided: dict[tuple, list[int]] = {}
        for i, it in enumerate(items):
            v = check_answer(it.answer, it.truth, list(it.options) if it.options else None, free_form=self.free_form)
            if v is Verdict.UNDECIDED:
                key = (it.question, str(it.truth), str(it.answer), tuple(it.options or ()))
                undecided.setdefault(key, []).append(i)
            else:
                results[i] = (v is Verdict.RIGHT, "rule")
                self.stats["rule_right" if v is Verdict.RIGHT else "rule_wrong"] += 1
        if undecided and not self.has_llm:
            for idx in undecided.values():
                for i in idx:
                    results[i] = (False, "none")
                self.stats["undecided_no_judge"] += len(idx)
            return results  # type: ignore[return-value]
        new = [k for k in undecided if k not in self._cache]
        if new:
            replies = self._replies([judge_prompt(q, t, a) for q, t, a, _ in new])
            self.stats["judge_calls"] += len(new)
            for k, reply in zip(new, replies):
                self._cache[k] = parse_judge(reply)
        for k, idx in undecided.items():
            verdict = self._cache[k]
            self.stats["judge_cached"] += len(idx) - (k in new)
            for i in idx:
                if verdict is None:
                    results[i] = (False, "none")
                    self.stats["judge_unparseable"] += 1
                else:
                    results[i] = (verdict, "judge")
                    self.stats["judge_right" if verdict else "judge_wrong"] += 1
        return results  # type: ignore[return-value]

    def report(self) -> str:
        s = self.stats
        line = (f"judge: {s['rule_right'] + s['rule_wrong']} decided by rules ({s['rule_right']} right), "
                f"{s['judge_calls']} LLM judge calls ({s['judge_cached']} repeats served from cache), "
                f"{s['judge_right']} judged right, {s['judge_wrong']} judged wrong, "
                f"{s['judge_unparseable']} unparseable replies counted wrong")
        if s["undecided_no_judge"]:
            line += f", {s['undecided_no_judge']} undecided by the rules counted wrong (no judge model configured)"
        return line
