"""Best-of-N PRM scoring throughput: the BoN scorer against one forward pass per step prefix, both input formats.

Same tiny random Qwen2-VL PRM, same candidates (8 questions x 8 candidates x 5 steps, one 200 x 300 image per
question), measured in one run. The reference is the released code's loop (`dreamprm.bon.naive_scores`):
batch size 1, the image opened and processed for every prefix, logits at every position. The BoN scorer is
`dreamprm.bon.score_questions` as BoN/score.py runs it (`--packing tree`, and `none` = `prm.score` on padded
batches, for comparison). Timings alternate between methods and keep each one's fastest of `--repeats` runs, so
a busy machine disturbs the ratio less. Targets on the CPU: paper >= 1.5x, stepwise >= 4x. The script also
checks that every method gives the reference's scores (to 1e-4).

    python benchmarks/prm_scoring.py [--questions 8] [--candidates 8] [--steps 5] [--batch_size 8] [--repeats 2]
                                     [--threads 1]
"""
from __future__ import annotations

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamprm.bon import TreeScorer, candidate_samples, load_candidates, naive_scores, score_questions  # noqa: E402
from dreamprm.io import AppendWriter, read_records  # noqa: E402
from dreamprm.prm import PRM  # noqa: E402
from dreamprm.miniworld.synthetic import write_bon_candidates  # noqa: E402
from dreamprm.miniworld.tiny import build_all  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch_size", type=int, default=8, help="candidates per forward pass of the BoN scorer")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per method (the fastest counts)")
    ap.add_argument("--models", default=None, help="tiny model directory (default: build into a temp dir)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; 1 is steadier "
                                                                "on a machine shared with other jobs)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prm_dir = Path(args.models) / "prm" if args.models else build_all(tmp / "models")["prm"]
        src = write_bon_candidates(tmp, args.questions, args.candidates, args.steps, (200, 300))
        questions, _ = load_candidates(src, tmp)
        samples = [s for q in questions.values() for s in candidate_samples(q)]
        n_prefixes = sum(len(s.prefixes) for s in samples)
        print(f"{len(questions)} questions x {args.candidates} candidates x {args.steps} steps = {n_prefixes} "
              f"prefixes, images 200 x 300, fp32, {torch.get_num_threads()} threads, batch {args.batch_size}")
        for fmt in ("paper", "stepwise"):
            prm = PRM.from_pretrained(str(prm_dir), "cpu", "fp32", fmt).eval()
            torch.nn.init.normal_(prm.head.weight, std=0.05)  # spread the scores: equality then means something
            tree, plain = TreeScorer(prm).score, prm.score
            runs = {"one prefix at a time": lambda: naive_scores(prm, samples)}
            for name, scorer in (("BoN scorer, packing tree", tree), ("BoN scorer, packing none", plain)):
                runs[name] = (lambda scorer=scorer: _score_all(questions, scorer, args.batch_size, tmp))
            naive_scores(prm, samples[:1]), tree(samples[:2]), plain(samples[:2])  # warm-up: first-call costs
            best, out = {}, {}
            for _ in range(args.repeats):
                for name, run in runs.items():
                    t = time.perf_counter()
                    out[name] = run()
                    best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
            ref = out["one prefix at a time"]
            for name in runs:
                diff = (out[name] - ref).abs().max().item()
                ratio = best["one prefix at a time"] / best[name]
                print(f"{fmt:>8} | {name:<26} {n_prefixes / best[name]:8.1f} prefixes/s  {ratio:5.2f}x  "
                      f"max |diff| {diff:.1e}")
                if diff > 1e-4:
                    sys.exit(f"{fmt}: {name} differs from the reference by {diff:.2e}")


def _score_all(questions: dict, scorer, batch_size: int, tmp: Path) -> torch.Tensor:
    """Scores in question and candidate order, through the same loop as BoN/score.py (written to a file)."""
    out = tmp / "scores.jsonl"
    out.unlink(missing_ok=True)
    with AppendWriter(out, key=lambda r: r["id"], resume=False) as w:
        score_questions(questions, scorer, w, batch_size, {}, progress=False)
    by_id = {r["id"]: r for r in read_records(out)}
    return torch.tensor([x for q in questions for c in by_id[q]["candidates"] for x in c["scores"]])


if __name__ == "__main__":
    main()
