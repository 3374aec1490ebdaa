"""Why the mini world's domain weights move as they do: per-sample hypergradient alignment at a given PRM.

    python benchmarks/world_alignment.py --run runs/demo --prm runs/demo/vanilla/prm [--batches 8x4,16x32]

darts moves domain weight w_d with the alignment g_i . m of the lower-level gradients g_i of domain d's
train samples in the current batch with the meta gradient m of the current meta batch (a weight rises when
training on its samples would lower the meta loss). This script computes every per-sample gradient of a
demo run's train and meta sets once (a few minutes on one core), then reports

- per domain: the mean alignment over the whole meta set, split into clean and corrupted questions (the
  world's policy.json knows which are which), with its per-sample standard deviation;
- the Spearman correlation of the full-data alignment with the known quality (infinitely large batches);
- for each batch configuration TxM (T train samples, M meta records per upper step, the run's number of
  upper steps): the distribution of the Spearman correlation that the summed, sampled drift would have.

A claim that the weights follow quality needs the full-data ordering to be right AND the sampled drift to
be well above its noise; this tells which of the two fails. Numbers depend on the PRM state: compare the
warm-up PRM with the trained ones.
"""
from __future__ import annotations

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamprm.aggregation import aggregate  # noqa: E402
from dreamprm.prm import PRM  # noqa: E402
from dreamprm.samples import load_meta, load_train  # noqa: E402


def per_sample_grads(prm: PRM, losses) -> torch.Tensor:
    params = [p for p in prm.parameters() if p.requires_grad]
    rows = []
    for loss_fn in losses:
        prm.zero_grad()
        loss_fn().backward()
        rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]))
    return torch.stack(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a demo output directory (world/, mc/, meta/)")
    ap.add_argument("--prm", required=True, help="the PRM to measure at (e.g. <run>/warmup/prm)")
    ap.add_argument("--batches", default="8x4,8x32,32x32", help="TxM batch configurations to simulate")
    ap.add_argument("--steps", type=int, default=140, help="upper steps (iterations / unroll steps)")
    ap.add_argument("--draws", type=int, default=200, help="simulated runs per configuration")
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run = Path(a.run)
    prm = PRM.from_pretrained(a.prm, device="cpu", precision="fp32")
    train = load_train(run / "mc/train.jsonl", ROOT, prm.fmt)
    meta = load_meta(run / "meta/meta.jsonl", ROOT)
    if prm.fmt != "stepwise":
        sys.exit("this diagnostic assumes the stepwise format (one train sample per response)")

    def train_loss(i):
        return lambda: ((prm.score([train.samples[i]]) - torch.tensor(train.labels[i])) ** 2).mean()

    def meta_loss(j):
        s = meta.samples[j]
        return lambda: (aggregate(prm.score([s]).float(), [len(s.prefixes)], "mean_log_odds")[0] - meta.labels[j]) ** 2

    G = per_sample_grads(prm, [train_loss(i) for i in range(len(train.samples))])
    M = per_sample_grads(prm, [meta_loss(j) for j in range(len(meta.samples))])
    A = (G @ M.T).numpy()  # A[i, j] = g_i . m_j
    world = json.loads((run / "world/world.json").read_text())
    quality = {r["name"]: r["quality"] for r in world["domains"] if r["role"] == "train"}
    policy = json.loads((run / "world/policy.json").read_text())["questions"]
    corrupted = np.array([policy[i]["corrupted"] for i in train.ids])
    names = sorted(set(train.domains))
    dom = np.array([names.index(d) for d in train.domains])
    full = A.mean(1)
    print(f"PRM {a.prm}: {len(G)} train samples, {len(M)} meta records")
    print(f"{'domain':<12} {'quality':>7} {'alignment':>10}   clean (sd, n)                corrupted (sd, n)")
    for k, n in enumerate(names):
        parts = []
        for sel in ((dom == k) & ~corrupted, (dom == k) & corrupted):
            parts.append(f"{full[sel].mean():+.2e} ({full[sel].std():.1e}, {sel.sum():>3})" if sel.any() else "—")
        row = "   ".join(f"{p:<26}" for p in parts)
        print(f"{n:<12} {quality[n]:>7.2f} {full[dom == k].mean():>+10.2e}   {row}")
    q = [quality[n] for n in names]
    print(f"Spearman(full-data alignment, quality) = {spearmanr([full[dom == k].mean() for k in range(len(names))], q)[0]:.2f}")
    rng = np.random.default_rng(0)
    for cfg in a.batches.split(","):
        bt, bm = (int(x) for x in cfg.split("x"))
        rhos = []
        for _ in range(a.draws):
            drift = np.zeros(len(names))
            for _ in range(a.steps):
                B, Mb = rng.integers(0, len(G), bt), rng.integers(0, len(M), bm)
                np.add.at(drift, dom[B], A[np.ix_(B, Mb)].mean(1) / bt)
            rhos.append(spearmanr(drift, q)[0])
        rhos = np.array(rhos)
        print(f"batches {bt} train x {bm} meta, {a.steps} upper steps: Spearman of the sampled drift "
              f"{rhos.mean():.2f} +- {rhos.std():.2f}, P(>= 0.8) = {np.mean(rhos >= 0.8):.2f}")


if __name__ == "__main__":
    main()
