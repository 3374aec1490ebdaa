"""Time per lower iteration of the bi-level loop divided by that of `--baseline` (vanilla PRM).

Same tiny Qwen2-VL PRM, same synthetic data, same schedule, measured in one run (machines are noisy: only
the ratio means anything). Counting passes puts the floor near 1.4 (SPEC section 7); a plain use of betty
measured 1.55; the target is at most 1.5.

    python benchmarks/blo_overhead.py [--iterations 60] [--repeats 3]
"""
from __future__ import annotations

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamprm.cli import parse_args  # noqa: E402
from dreamprm.reweighting import ReweightConfig, Reweighter  # noqa: E402
from dreamprm.steps import step_prefixes  # noqa: E402
from dreamprm.miniworld.tiny import build_all  # noqa: E402


def make_data(root: Path, n_questions: int = 24) -> None:
    rng = np.random.default_rng(0)
    train, meta = [], []
    for q in range(n_questions):
        img = f"img{q}.png"
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(root / img)
        resp = "".join(f"Step {k}: reasoning about part {k} of question {q}, carefully.\n\n" for k in range(1, 6))
        for sid, prefix in enumerate(step_prefixes(resp), 1):
            train.append({"id": q, "sid": sid, "input": f"Question {q}: how many?", "add": prefix,
                          "image_path": img, "dataset": f"d{q % 3}", "accuracy": float(rng.random())})
        meta.append({"id": q, "true_false": bool(q % 2), "input": f"Question {q}: how many?\n\n{resp}Final answer: 3",
                     "image_path": img})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (root / "meta.jsonl").write_text("".join(json.dumps(r) + "\n" for r in meta))


def seconds_per_iteration(root: Path, prm: Path, iterations: int, out: str, *extra: str) -> float:
    cfg = parse_args(ReweightConfig, ["--path", str(root), "--train", "train.jsonl", "--meta", "meta.jsonl",
                                      "--prm", str(prm), "--out", out, "--figs", "figs", "--gpu", "cpu",
                                      "--precision", "fp32", "--iterations", str(iterations),
                                      "--log_every", "1000", "--save_every", "100000", *extra])
    r = Reweighter(cfg)
    r.build()
    r.bar = _NoBar()
    t = time.perf_counter()
    r.engine.run()
    return (time.perf_counter() - t) / iterations


class _NoBar:
    def update(self, n): pass
    def set_postfix(self, **kw): pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each; the median is reported")
    ap.add_argument("--input_format", default="paper")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prm = build_all(root / "models")["prm"]
        make_data(root)
        fmt = ["--input_format", args.input_format]
        seconds_per_iteration(root, prm, 10, "warmup", *fmt)  # first-call costs out of the way
        blo, base = [], []
        for i in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            blo.append(seconds_per_iteration(root, prm, args.iterations, f"blo{i}", *fmt))
            base.append(seconds_per_iteration(root, prm, args.iterations, f"base{i}", "--baseline", *fmt))
    b, v = float(np.median(blo)), float(np.median(base))
    print(f"input format {args.input_format}; {args.iterations} iterations x {args.repeats} runs each")
    print(f"bi-level (darts, unroll 5): {1000 * b:.1f} ms / lower iteration")
    print(f"baseline (vanilla PRM):     {1000 * v:.1f} ms / lower iteration")
    print(f"ratio: {b / v:.2f}  (target <= 1.5; plain betty measured 1.55)")


if __name__ == "__main__":
    main()
