"""How well `python -m dreamprm.plan` predicts a larger run from a pilot, on the CPU mini world (the numbers quoted in
README.md and MC/README.md). For each (pilot, target) size: a pilot world of seed 1 and a target world of seed 0 run the
demo's generation stages (train rollouts, tree, MC with the SIMULATED policy); the planner, given the pilot's files
and the target's scale, is compared with what the target's stages generated (characters: one "token" per character).

    python benchmarks/plan_accuracy.py [--sizes 10:50,20:200]      # ~1 min for 10:50, ~4 min for 20:200 on 2 cores
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dreamprm import plan as planner  # noqa: E402
from dreamprm.io import read_records  # noqa: E402

SIM = ["--backend", "simulated", "--policy", "world/policy.json", "--judge", "none", "--gpu", "cpu"]


def world_mc(root: Path, seed: int, n_train: int) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for args in (["-m", "dreamprm.miniworld.world", "--out", "world", "--n_train", str(n_train), "--n_meta", "2", "--n_test", "2",
                  "--n_step", "2"],
                 ["inference/world.py", *SIM, "--dataset", "train", "--questions", "world/data/train.jsonl",
                  "--out", "rollouts/train.jsonl", "--n", "1"],
                 ["MC/tree.py", "--responses", "rollouts/train.jsonl", "--out", "mc/tree.jsonl"],
                 ["MC/estimate.py", *SIM, "--tree", "mc/tree.jsonl", "--out", "mc/estimate.jsonl"]):
        subprocess.run([sys.executable, *args, "--path", str(root), "--seed", str(seed)], cwd=ROOT, env=env,
                       check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10:50,20:200", help="pilot:target questions per domain, comma-separated")
    sizes = [tuple(map(int, s.split(":"))) for s in ap.parse_args().sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="plan-accuracy-"))
    for pilot_n, target_n in sizes:
        pilot, target = work / f"pilot{pilot_n}", work / f"target{target_n}"
        world_mc(pilot, 1, pilot_n)
        world_mc(target, 0, target_n)
        r = planner.plan(planner.parse_args(planner.PlanArgs, [
            "--path", str(pilot), "--pilot_rollouts", "rollouts/train.jsonl", "--pilot_estimate", "mc/estimate.jsonl",
            "--domains", "6", "--questions_per_domain", str(target_n), "--chars_per_token", "1"]))
        generated = json.loads((target / "mc" / "estimate.jsonl.done").read_text())["generated in this run"]
        responses = read_records(target / "rollouts" / "train.jsonl")
        mc, ro = r["stages"]["MC estimation"], r["stages"]["train rollouts"]
        rows = {"tree nodes": (r["tree_nodes"], len(read_records(target / "mc" / "estimate.jsonl"))),
                "MC generations": (mc["generations"], generated["completions"]),
                "MC characters": (mc["tokens"], generated["completion_chars"]),
                "rollout characters": (ro["tokens"], sum(len(x["response"]) for x in responses))}
        print(f"pilot {pilot_n} -> target {target_n} questions per domain:")
        for name, (predicted, actual) in rows.items():
            print(f"  {name:<20} predicted {predicted:>12,.0f}  actual {actual:>12,}  {100 * (predicted / actual - 1):+.1f}%")


if __name__ == "__main__":
    main()
