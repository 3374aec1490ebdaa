"""A trained PRM from Python: the per-step scores of (image, question, response) triples, as BoN scores them.

    from dreamprm import PRMScorer

    prm = PRMScorer.from_pretrained("runs/reweighting/prm")      # a trained PRM directory or a hub id
    out = prm.score([("chart.png", "How many bars are red?", "Step 1: ...\\nStep 2: ...\\nFinal answer: 3"),
                     {"image": None, "question": "What is 2 + 3?", "response": "Step 1: 2 + 3 = 5.\\nFinal answer: 5"}])
    out[0].step_scores        # one probability per step, exactly BoN/score.py's numbers
    out[0].score()            # the paper's aggregate (mean of log-odds); out[0].score("min"), ...
    prm.rewards(triples)      # one number per triple (None for a response without steps): an RL reward

Scores come from the scorer BoN/score.py uses (`bon.fast_scorer`: tree-packed for the scalar kind, one pass
per candidate for the generative kind), triples grouped by image and question the way BoN groups a question's
candidates, so the same candidates get the same numbers. The kind and the input format are the ones the PRM
was trained with (its prm_config.json); steps are found by `dreamprm.steps` as everywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .aggregation import AGGREGATIONS
from .bon import cot_scores, fast_scorer, packed
from .io import DataError
from .prm import check_probabilities
from .samples import response_sample
from .steps import find_steps

DEFAULT_AGGREGATION = "mean_log_odds"  # the paper's


@dataclass
class StepScores:
    """What the PRM says of one response: its steps and one score in [0, 1] per step (none without steps)."""
    steps: list[str]
    step_scores: list[float] = field(default_factory=list)

    def score(self, aggregation: str = DEFAULT_AGGREGATION) -> float | None:
        """The response's score by an aggregation of `dreamprm.aggregation.AGGREGATIONS`; None without steps."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}; got {aggregation!r}")
        return cot_scores([self.step_scores], aggregation)[0]


def as_triple(t, where: str = "triple") -> tuple:
    """(image, question, response) from a tuple or a dict with those keys; image a path, a PIL image or None."""
    if isinstance(t, dict):
        missing = [k for k in ("question", "response") if k not in t]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)} (needs question, response and optionally image)")
        t = (t.get("image"), t["question"], t["response"])
    if not (isinstance(t, (tuple, list)) and len(t) == 3):
        raise DataError(f"{where}: expected (image, question, response) or a dict with those keys, got {t!r:.80}")
    image, question, response = t
    if not isinstance(question, str) or not isinstance(response, str):
        raise DataError(f"{where}: question and response must be strings")
    if isinstance(image, (str, Path)):
        image = str(image)
        if not Path(image).is_file():
            raise DataError(f"{where}: image {image} not found")
    return image, question, response


class PRMScorer:
    """Batched step scoring with a loaded PRM of either kind. `batch_size`: candidates per forward pass (as
    BoN/score.py's --batch_size); `packing`: tree (exact, fast) or none (padded batches)."""

    aggregations = tuple(AGGREGATIONS)

    def __init__(self, prm, batch_size: int = 8, packing: str = "tree"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.prm, self.batch_size = prm.eval(), batch_size
        self._score = fast_scorer(prm, packing)

    @classmethod
    def from_pretrained(cls, name: str | Path, device: str | None = None, precision: str = "auto",
                        batch_size: int = 8, packing: str = "tree", kind: str | None = None) -> "PRMScorer":
        """A trained PRM directory (as reweighting/train.py writes it) or a hub id. `device` None: cuda if
        available; `precision` auto: bf16 on GPU, fp32 on CPU; `kind` None: the kind it was trained as."""
        from . import prm as prm_module

        return cls(prm_module.load_prm(str(name), device, precision, kind), batch_size, packing)

    def score(self, triples, progress: bool = False) -> list[StepScores]:
        """One StepScores per triple, in order."""
        from tqdm.auto import tqdm

        items = [as_triple(t, f"triple {i}") for i, t in enumerate(triples)]
        samples = [response_sample(q, r, img) for img, q, r in items]
        out = [StepScores([s.text.strip() for s in find_steps(r)]) for _, _, r in items]
        # a question's candidates together, in chunks of batch_size, packed as BoN packs them
        groups: dict = {}
        for i, s in enumerate(samples):
            if s is not None:
                key = s.image if isinstance(s.image, str) or s.image is None else id(s.image)
                groups.setdefault((key, s.question), []).append(i)
        chunks = [idx[j:j + self.batch_size] for idx in groups.values() for j in range(0, len(idx), self.batch_size)]
        with tqdm(total=sum(map(len, chunks)), desc="PRM", unit="response", disable=not progress) as bar:
            for batch in packed(chunks, len, self.batch_size):
                flat = [i for c in batch for i in c]
                scores = self._score([samples[i] for i in flat]).float().cpu().tolist()
                k = 0
                for i in flat:
                    m = len(samples[i].prefixes)
                    check_probabilities(scores[k:k + m], f"triple {i}", fix="load it with precision='fp32'")
                    out[i].step_scores = scores[k:k + m]
                    k += m
                bar.update(len(flat))
        return out

    def rewards(self, triples, aggregation: str = DEFAULT_AGGREGATION) -> list[float | None]:
        """One aggregate score per triple (None for a response without steps)."""
        return [s.score(aggregation) for s in self.score(triples)]

    __call__ = score
