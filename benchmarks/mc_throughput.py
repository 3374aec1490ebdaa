"""MC-estimation throughput: the batched engine (dreamprm.mc.estimate) against one completion at a time.

Same tiny random InternVL policy, same 32 tree nodes, 4 completions each, greedy decoding, measured in one
run (machines are noisy: only the ratio means anything). The one-at-a-time loop is what the released code
does: one `generate` per completion, then judge it. The script also checks that both give identical
completions. SPEC section 7 measured 3.9x for 8 prompts x 4 return sequences per call; the target here is
at least 4x.

    python benchmarks/mc_throughput.py [--batch_size 32] [--max_new_tokens 32]
"""
from __future__ import annotations

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamprm.backends import Backend, TransformersBackend  # noqa: E402
from dreamprm.io import AppendWriter  # noqa: E402
from dreamprm.judge import Judge  # noqa: E402
from dreamprm.mc import MCSettings, build_tree, estimate, node_key  # noqa: E402
from dreamprm.miniworld.tiny import build_all  # noqa: E402

COMPLETIONS = 4


class Recorder(Backend):
    """Keeps every completion by (node, rollout seed) so the two runs can be compared."""

    def __init__(self, inner: Backend):
        self.inner, self.seen = inner, {}

    def generate(self, requests, n, temperature, max_new_tokens):
        out = self.inner.generate(requests, n, temperature, max_new_tokens)
        for r, o in zip(requests, out):
            self.seen[(node_key(r.question), r.seed)] = o[0]
        return out


def make_nodes(root: Path, n_nodes: int = 32) -> list[dict]:
    """8 responses x 4 steps = 32 nodes of different prefix lengths, over 4 images."""
    rng = np.random.default_rng(0)
    for k in range(4):
        Image.fromarray(rng.integers(0, 255, (64 + 16 * k, 96, 3), dtype=np.uint8)).save(root / f"img{k}.png")
    records = []
    for q in range(n_nodes // 4):
        resp = "".join(f"Step {s}: about part {s} of question {q}." + " more" * (q + s) + "\n\n" for s in range(1, 5))
        records.append({"id": q, "response": resp + "Final answer: 3", "input": f"Question {q}: how many?",
                        "true_false": bool(q % 2), "image_path": str(root / f"img{q % 4}.png"),
                        "ground_truth": "3", "dataset": "bench"})
    nodes, _ = build_tree(records)
    return nodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch_size", type=int, default=32, help="forward batch of the batched engine")
    ap.add_argument("--max_new_tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="0: greedy, completions compared for identity; > 0: sampling, throughput only")
    ap.add_argument("--models", default=None, help="tiny model directory (default: build into a temp dir)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        policy = Path(args.models) / "policy" if args.models else build_all(tmp / "models")["policy"]
        nodes = make_nodes(tmp)
        backend = TransformersBackend(str(policy), "cpu", "fp32", batch_size=args.batch_size)
        # "fixed" with min 1 + 4: exactly 4 new completions per node, the whole pool in one call.
        # min_completion_chars 0: redraws of short completions would make the two runs' call counts differ
        s = MCSettings(min_rollouts=1 + COMPLETIONS, max_rollouts=1 + COMPLETIONS, rule="fixed", temperature=args.temperature,
                       max_new_tokens=args.max_new_tokens, pool=len(nodes), min_completion_chars=0)
        warm = Recorder(backend)
        with AppendWriter(tmp / "warm.jsonl", key=node_key) as w:  # warm-up: first-call costs, not measured
            estimate(nodes[:2], warm, Judge(None), w, s, progress=False)

        batched = Recorder(backend)
        t = time.perf_counter()
        with AppendWriter(tmp / "batched.jsonl", key=node_key) as w:
            estimate(nodes, batched, Judge(None), w, s, progress=False)
        t_batched = time.perf_counter() - t

        single = Recorder(backend)
        backend.batch_size = 1
        s1 = MCSettings(**{**s.__dict__, "pool": 1})
        t = time.perf_counter()
        with AppendWriter(tmp / "single.jsonl", key=node_key) as w:
            # pool 1 and one request per call: one generate per completion, like the released code
            estimate(nodes, OneAtATime(single), Judge(None), w, s1, progress=False)
        t_single = time.perf_counter() - t

    n = len(nodes) * COMPLETIONS
    assert len(batched.seen) == len(single.seen) == n, (len(batched.seen), len(single.seen))
    same = batched.seen == single.seen if args.temperature <= 0 else None  # samples differ by design
    mode = "greedy" if args.temperature <= 0 else f"sampling at temperature {args.temperature}"
    print(f"{len(nodes)} prefixes x {COMPLETIONS} completions = {n}, {mode}, max_new_tokens {args.max_new_tokens}")
    print(f"one completion per generate call:   {n / t_single:7.2f} completions/s ({t_single:.1f} s)")
    print(f"batched engine, batch {args.batch_size:>3}:         {n / t_batched:7.2f} completions/s ({t_batched:.1f} s)")
    print(f"ratio: {t_single / t_batched:.2f}x" + ("" if same is None else f"; identical completions: {same}"))
    if same is False:
        sys.exit(1)


class OneAtATime(Backend):
    def __init__(self, inner: Backend):
        self.inner = inner

    def generate(self, requests, n, temperature, max_new_tokens):
        return [self.inner.generate([r], n, temperature, max_new_tokens)[0] for r in requests]


if __name__ == "__main__":
    main()
