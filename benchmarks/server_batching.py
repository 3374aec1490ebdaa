"""What batching concurrent requests buys the PRM scoring server (dreamprm/server.py), as a ratio in one run.

An RL loop posts one response per request, many at once. The same requests (Q questions x C candidates, one
candidate per request, all sent concurrently) go to two servers over the same tiny PRM: one that scores each
request alone (--max_batch 1) and one that batches what is queued (--max_batch 64, the default). Both runs
alternate, R rounds each; the ratio of their median wall times is the speed-up. The answers of both are compared
too: batching must not change a score beyond float rounding.

    python benchmarks/server_batching.py [--questions 8] [--candidates 8] [--rounds 3]

The tiny PRM on the CPU stands in for the real one on a GPU: there the batched forward pass costs even less
per response, so this ratio is a floor, not a forecast.
"""
import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dreamprm.miniworld.tiny import build_all  # noqa: E402
from dreamprm.prm import PRM  # noqa: E402


def start(root: Path, *extra) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "dreamprm.server", "--path", str(root), "--prm", "prm", "--gpu", "cpu",
           "--precision", "fp32", "--port", "0", *extra]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("serving "):
            return proc, line.split(" on ")[1].split()[0]
    raise SystemExit(f"server did not start: {' '.join(cmd)}")


async def post_all(url: str, items: list[dict]) -> tuple[float, list[list[float]]]:
    async with aiohttp.ClientSession() as s:
        async def one(it):
            async with s.post(f"{url}/score_steps", json={"items": [it]}) as r:
                r.raise_for_status()
                return (await r.json())["results"][0]["step_scores"]
        t = time.perf_counter()
        out = await asyncio.gather(*(one(it) for it in items))
        return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = build_all(root / "models")
        torch.manual_seed(0)
        prm = PRM.from_pretrained(str(models["prm"]), "cpu", "fp32")
        torch.nn.init.normal_(prm.head.weight, std=0.05)
        prm.save_pretrained(root / "prm")
        items = []
        for q in range(args.questions):
            Image.new("RGB", (96, 64), (40 * q % 255, 90, 160)).save(root / f"q{q}.png")
            for c in range(args.candidates):
                steps = "".join(f"Step {k}: part {k} of attempt {c}" + " and so on" * (c % 4) + ".\n\n"
                                for k in range(1, 5))
                items.append({"image": f"q{q}.png", "question": f"Question {q}: how many?",
                              "response": steps + f"Final answer: {c}"})
        servers = {"alone (--max_batch 1)": start(root, "--max_batch", "1"),
                   "batched (--max_batch 64)": start(root, "--max_batch", "64")}
        try:
            times = {k: [] for k in servers}
            answers = {}
            for _ in range(args.rounds):
                for name, (_, url) in servers.items():
                    dt, answers[name] = asyncio.run(post_all(url, items))
                    times[name].append(dt)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=60)
    (a, ta), (b, tb) = times.items()
    diff = max(abs(x - y) for u, v in zip(answers[a], answers[b]) for x, y in zip(u, v))
    print(f"{len(items)} concurrent requests ({args.questions} questions x {args.candidates} candidates, "
          f"one per request), {args.rounds} rounds, torch threads {torch.get_num_threads()}")
    for name, ts in times.items():
        print(f"  {name:26s} median {statistics.median(ts):.3f} s  ({', '.join(f'{t:.3f}' for t in ts)})")
    print(f"  speed-up of batching: {statistics.median(ta) / statistics.median(tb):.2f}x; "
          f"largest score difference {diff:.2e}")


if __name__ == "__main__":
    main()
