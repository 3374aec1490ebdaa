"""The SIMULATED policy of the CPU mini world (issue 6): `--backend simulated --policy runs/world/policy.json`.

Not a model. It stands in for the policy in stage 2 (rollouts) and stage 4 (MC completions) so that the whole
pipeline runs on two CPU cores with known answers. Its "weights" are the policy file that `dreamprm.miniworld.world`
writes: per question the true answer, the typical wrong answer (truth + the domain's error offset), the step
error rate and the claims of steps 2-4 on the right and on the wrong track; per domain the phrase tables.

How it writes a chain of thought (five structured steps, then `Final answer: N`):

- Step 1 restates the question. Each of steps 2-4 errs independently with probability
  step_error_rate x temperature (capped at 1). The first error puts the chain on the wrong track: that step
  and every later one state the wrong intermediate value, step 5 concludes the typical wrong answer and so
  does the final answer. Without an error the chain states the right values and ends at the truth.
- A step that errs says so with its domain's error phrase ("Quickly estimating: ..."), except with probability
  `marker_noise` (the world's, 0.05 by default); a step that does not err uses a neutral phrase, except with
  the same probability.
  The values, not the phrases, carry the truth.
- A completion request (a tree node's step prefix) continues after the last step of the prefix. Whether the
  prefix already went wrong is read from its own values (each step's integers against the right track's),
  never from the ambiguous phrases: an error in the prefix ends the completion at the wrong answer, a clean
  prefix ends right with probability (1 - p) ** (error-prone steps left). Only the continuation is returned.
- Every sample is drawn from `numpy.random.default_rng(request.seed)`: the same seed gives the same text
  whatever else shares the batch. Temperature 0 gives the error-free chain with the first neutral phrase.
  `max_new_tokens` is ignored (a chain is ~150 words). Thousands of requests per second.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..backends import Backend, Request
from ..io import DataError, read_json
from ..prompts import STEPS
from ..steps import FINAL_ANSWER, find_steps

POLICY_FORMAT = "dreamprm-simulated-policy/1"
ERROR_PRONE = (2, 3, 4)  # steps that can err; step 1 restates, step 5 concludes
DRAWS = 3 * len(ERROR_PRONE)  # uniforms per sample: error, marker noise, phrase variant for each error-prone step
_INT = re.compile(r"\d+")


def values(text: str) -> list[int]:
    """The integers a step states, in order: how the simulator tells the right track from the wrong one."""
    return [int(x) for x in _INT.findall(text)]


def _body(step_text: str) -> str:
    """A step without its header line ("Step 3: Identify ...")."""
    return step_text.split("\n", 1)[1] if "\n" in step_text else ""


def _sentence(phrase: str, claim: str) -> str:
    return f"{phrase[:1].upper()}{phrase[1:]}: {claim}."


def step_text(k: int, body: str) -> str:
    return f"Step {k}: {STEPS[k - 1][0]}\n   - {body}\n\n"


class UnknownQuestion(DataError, KeyError):
    """A question id the policy file does not hold: a lookup error, and a one-line user error (wrong world)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SimulatedPolicy(Backend):
    """SIMULATED policy backend: chains of thought written from the world's policy file, seeded per request."""

    def __init__(self, model: str | Path, device: str | None = None, precision: str = "auto",
                 batch_size: int = 256, progress: bool = False, verbose: bool = True):
        # `model` is a path as given: the stages resolve --policy against --path (GenerationArgs.make_backend).
        path = Path(model)
        if path.is_dir():
            path = path / "policy.json"
        if not path.is_file():
            raise DataError(f"{path}: no SIMULATED policy file (write one with `python -m dreamprm.miniworld.world --out DIR`; "
                            "--policy is DIR/policy.json, relative to --path)")
        policy = read_json(path, "SIMULATED policy file")
        if not isinstance(policy, dict) or policy.get("format") != POLICY_FORMAT:
            raise DataError(f"{path}: not a SIMULATED policy file (format {POLICY_FORMAT!r} expected)")
        try:
            self.kinds: dict = dict(policy["kinds"])
            self.questions: dict = dict(policy["questions"])
            self.noise = float(policy["marker_noise"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: damaged SIMULATED policy file ({type(e).__name__}: {e}); write it again "
                            "with `python -m dreamprm.miniworld.world`") from None
        self.path, self.batch_size = path, batch_size  # batch_size only sizes the callers' calls
        self._expected: dict[str, dict[int, list[int]]] = {}
        if verbose:
            print(f"policy: simulated policy (no model): {len(self.questions)} questions, {len(self.kinds)} domains "
                  f"from {path}")

    # --- reading a prefix ---------------------------------------------------------------------------

    def question(self, qid) -> dict:
        try:
            return self.questions[qid]
        except KeyError:
            raise UnknownQuestion(f"the SIMULATED policy {self.path} knows no question {qid!r}: were the questions and "
                           "policy.json written by the same `python -m dreamprm.miniworld.world` run?") from None

    def expected(self, qid) -> dict[int, list[int]]:
        """Step number -> the integers that step states on the right track (steps 2-5)."""
        if qid not in self._expected:
            q = self.question(qid)
            exp = {k: values(c) for k, c in zip(ERROR_PRONE, q["claims"]["right"])}
            exp[5] = [q["truth"]]
            self._expected[qid] = exp
        return self._expected[qid]

    def read_prefix(self, qid, prefix: str) -> tuple[int, bool]:
        """(number of the prefix's last step, 0 if none; whether any of its steps left the right track)."""
        steps = find_steps(prefix)
        exp = self.expected(qid)
        wrong = any(values(_body(s.text)) != exp[s.number] for s in steps if s.number in exp)
        return (steps[-1].number if steps else 0), wrong

    # --- writing --------------------------------------------------------------------------------------

    def continuation(self, qid, u: np.ndarray, start: int, wrong: bool, temperature: float) -> str:
        """Steps start..5 and the final answer, from DRAWS uniforms `u`; `wrong`: the prefix already erred."""
        q = self.question(qid)
        kind = self.kinds[q["kind"]]
        p = min(1.0, q["step_error_rate"] * temperature) if temperature > 0 else 0.0
        noise = self.noise if temperature > 0 else 0.0
        parts = []
        for k in range(max(start, 1), 6):
            if k == 1:
                parts.append(step_text(1, f"The question asks for {q['restate']}."))
            elif k in ERROR_PRONE:
                i = k - ERROR_PRONE[0]
                err = bool(u[i] < p)
                wrong = wrong or err
                marked = (u[3 + i] >= noise) if err else (u[3 + i] < noise)
                table = kind["error_phrases"] if marked else kind["neutral_phrases"]
                phrase = table[int(u[6 + i] * len(table))] if temperature > 0 else table[0]
                claim = q["claims"]["wrong" if wrong else "right"][i]
                parts.append(step_text(k, _sentence(phrase, claim)))
            else:
                answer = q["wrong"] if wrong else q["truth"]
                parts.append(step_text(5, f"From the steps above, the answer is {answer}."))
        answer = q["wrong"] if wrong else q["truth"]
        return "".join(parts) + f"{FINAL_ANSWER} {answer}"

    def sample(self, qid, prefix: str, seed: int, n: int, temperature: float) -> list[str]:
        """n continuations of `prefix` ("" = a fresh chain) for question `qid`, drawn from seed alone."""
        last, wrong = self.read_prefix(qid, prefix) if prefix else (0, False)
        sep = "" if not prefix or prefix.endswith("\n\n") else ("\n" if prefix.endswith("\n") else "\n\n")
        u = np.random.default_rng(seed).random((n, DRAWS))
        return [sep + self.continuation(qid, u[j], last + 1, wrong, temperature) for j in range(n)]

    def generate(self, requests: list[Request], n: int, temperature: float, max_new_tokens: int) -> list[list[str]]:
        out = []
        for r in requests:
            if "id" not in r.question:
                raise ValueError("a SIMULATED policy request needs the question record or tree node (with its id)")
            out.append(self.sample(r.question["id"], r.prefix, r.seed, n, temperature))
        return out


