"""Small synthetic data made by construction, for tests, benchmarks and the smoke run of `scripts/demo.sh`.

Nothing here is a result: the labels are set by the code below, so that a test can know what the right
outcome is. (The CPU mini world of the demo, with a simulated policy, is a separate, larger design.)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

GOOD = "Step 1: The picture shows {n} red squares.\n\nStep 2: So the count is {n}.\n\n"
BAD = "Step 1: The picture shows no squares at all.\n\nStep 2: Guessing wildly, the count is zero.\n\n"


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_reweighting_problem(root: Path, clean=("clean_a", "clean_b"), corrupted=("noisy",), per_domain: int = 12,
                              n_meta: int = 8, seed: int = 0, image: str | None = None,
                              released: bool = False) -> tuple[Path, Path]:
    """train.jsonl and meta.jsonl in `root` where one domain's labels are corrupted by construction.

    Clean domains label good steps 1 and bad steps 0; corrupted domains flip the labels. The meta set holds
    whole CoTs (good = right, bad = wrong), so only the clean domains teach the PRM what the upper level
    rewards, and a correct bi-level loop must push the corrupted domains' weights below 1.
    `released`: every `add` ends at its step's text, without the separator after it, as in the authors'
    released train data (by default `add` ends with "\n\n", as MC/tree.py writes it).
    """
    rng = np.random.default_rng(seed)
    train, meta = [], []
    for d in (*clean, *corrupted):
        for q in range(per_domain):
            good = bool(rng.random() < 0.5)
            resp = (GOOD if good else BAD).format(n=q % 7 + 1)
            label = float(good) if d in clean else float(not good)
            cut = resp.index("Step 2")
            for sid, prefix in enumerate((resp[:cut], resp), 1):
                prefix = prefix.rstrip() if released else prefix
                train.append({"id": f"{d}-{q}", "sid": sid, "input": f"How many squares? ({q})", "add": prefix,
                              "image_path": image, "dataset": d, "accuracy": label})
    for q in range(n_meta):
        good = q % 2 == 0
        resp = (GOOD if good else BAD).format(n=q + 1)
        meta.append({"id": f"m{q}", "true_false": good, "image_path": image,
                     "input": f"How many squares? (m{q})\n\n{resp}Final answer: {q + 1 if good else 0}"})
    return _jsonl(root / "train.jsonl", train), _jsonl(root / "meta.jsonl", meta)


def write_counting_questions(root: Path, n: int = 4, seed: int = 0, dataset: str = "counting") -> Path:
    """`n` question records (`dataset/` format) asking how many squares a drawn image shows."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        k = int(rng.integers(1, 6))
        im = Image.new("RGB", (96, 64), "white")
        draw = ImageDraw.Draw(im)
        for j in range(k):
            x = 6 + 18 * j
            draw.rectangle([x, 24, x + 12, 36], fill="red")
        path = root / "images" / f"{dataset}-{i}.png"
        im.save(path)
        records.append({"id": f"{dataset}-{i}", "input": "How many red squares are in the image?",
                        "image_path": str(path), "ground_truth": str(k), "dataset": dataset,
                        "type": "free_form", "hint": "Answer with an integer.", "options": None})
    return _jsonl(root / f"{dataset}.jsonl", records)


def write_bon_candidates(root: Path, n_questions: int = 8, n_candidates: int = 8, n_steps: int = 5,
                         image_size: tuple[int, int] = (200, 300), dataset: str = "bench", seed: int = 0) -> Path:
    """`<root>/<dataset>.jsonl`: best-of-N candidates in the format inference writes, each question with its own
    random image (height, width) and candidates of `n_steps` steps of varied length. Candidate c answers c;
    the ground truth is question % n_candidates, so exactly one candidate per question is right."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for q in range(n_questions):
        path = root / "images" / f"{dataset}-{q}.png"
        Image.fromarray(rng.integers(0, 255, (*image_size, 3), dtype=np.uint8)).save(path)
        truth = q % n_candidates
        for c in range(n_candidates):
            steps = "".join(f"Step {s}: part {s} of question {q}, attempt {c}." + " more" * int(rng.integers(2, 16))
                            + "\n\n" for s in range(1, n_steps + 1))
            records.append({"id": f"{dataset}-{q}", "sample": c, "response": f"{steps}Final answer: {c}",
                            "input": f"Question {q}: how many squares are in the picture?", "true_false": c == truth,
                            "image_path": str(path), "ground_truth": str(truth), "dataset": dataset, "options": None,
                            "answer": str(c), "judged_by": "rule"})
    return _jsonl(root / f"{dataset}.jsonl", records)
