"""Time per lower iteration of instance-level reweighting divided by that of domain reweighting.

Same tiny Qwen2-VL PRM, same synthetic data (benchmarks/blo_overhead.py's), same schedule, measured in one run,
interleaved (machines are noisy: only the ratio means anything). Per PRM kind: the scalar kind runs domain and
instance_table; the generative kind also instance_net (it reads the + / - logits). Target: at most 1.1.

    python benchmarks/instance_overhead.py [--iterations 60] [--repeats 3]
"""
from __future__ import annotations

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm

import argparse
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blo_overhead import make_data, seconds_per_iteration  # noqa: E402

from dreamprm.miniworld.tiny import build_all  # noqa: E402

RUNS = {"scalar": ("domain", "instance_table"), "generative": ("domain", "instance_table", "instance_net")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each; the median is reported")
    ap.add_argument("--kinds", default="scalar,generative")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prm = build_all(root / "models")["prm"]
        make_data(root)
        for kind in args.kinds.split(","):
            opts = {rw: ["--prm_kind", kind, "--reweight", rw, "--input_format", "stepwise"] for rw in RUNS[kind]}
            seconds_per_iteration(root, prm, 10, f"warmup-{kind}", *opts["domain"])  # first-call costs
            times: dict = {rw: [] for rw in RUNS[kind]}
            for i in range(args.repeats):  # interleaved, so drift in machine load hits every run alike
                for rw in RUNS[kind]:
                    times[rw].append(seconds_per_iteration(root, prm, args.iterations, f"{kind}-{rw}{i}", *opts[rw]))
            med = {rw: float(np.median(t)) for rw, t in times.items()}
            print(f"{kind} PRM; {args.iterations} iterations x {args.repeats} runs each (darts, unroll 5)")
            for rw, t in med.items():
                ratio = "" if rw == "domain" else f"   ratio to domain {t / med['domain']:.3f} (target <= 1.1)"
                print(f"  {rw:<15} {1000 * t:7.1f} ms / lower iteration{ratio}")


if __name__ == "__main__":
    main()
