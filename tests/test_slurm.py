"""The Slurm launcher (dreamprm/slurm.py): its batch scripts, and the mini world's MC estimation run under a real
single-node Slurm cluster (tests/slurm_cluster.py) as a 4-task array plus its merge job, byte-identical to the
unsharded run, also after a task was cancelled mid-way and requeued."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamprm import slurm
from dreamprm.io import DataError
from slurm_cluster import Cluster, unavailable

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
SIM = ["--backend", "simulated", "--policy", "world/policy.json", "--judge", "none", "--gpu", "cpu"]


def py(root: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, *args, "--path", str(root)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A mini world's train rollouts and step tree, the unsharded MC labels and their train data."""
    root = tmp_path_factory.mktemp("slurm-world")
    py(root, "-m", "dreamprm.miniworld.world", "--out", "world", "--n_train", "40", "--n_meta", "4", "--n_test", "2",
       "--n_step", "2")
    py(root, "inference/world.py", *SIM, "--dataset", "train", "--questions", "world/data/train.jsonl",
       "--out", "rollouts/train.jsonl", "--n", "1")
    py(root, "MC/tree.py", "--responses", "rollouts/train.jsonl", "--out", "mc/tree.jsonl")
    py(root, "MC/estimate.py", *SIM, "--tree", "mc/tree.jsonl", "--out", "mc/full.jsonl")
    py(root, "MC/train_data.py", "--nodes", "mc/full.jsonl", "--out", "mc/full_train.jsonl")
    return root


def plan(root, *stage_args, shards=4, **opts):
    opts = {"gpus_per_task": 0, "cpus_per_task": 1, **opts}
    cfg = slurm.SlurmArgs(path=str(root), stage="mc", shards=shards, **opts)
    return slurm.build(cfg, ["--tree", "mc/tree.jsonl", *SIM, *stage_args])


def test_the_batch_scripts_run_each_shard_with_resume_and_merge_then_the_next_stage(world):
    p = plan(world, "--out", "mc/x.jsonl", "--shard", "1/3", "--resume", partition="gpu", time="2:00:00",
             account="lab", max_running=2)
    task, merge = p["task_script"], p["merge_script"]
    assert "#SBATCH --array=0-3%2" in task and "#SBATCH --requeue" in task and "#SBATCH --partition=gpu" in task
    assert "#SBATCH --time=2:00:00" in task and "#SBATCH --account=lab" in task and "gpus-per-task" not in task
    last = task.strip().splitlines()[-1]
    assert last.endswith('--shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --resume')
    assert "1/3" not in last and last.count("--resume") == 1  # the user's own --shard/--resume give way
    assert f"-m dreamprm.shards --path {world} --out {world}/mc/x.jsonl" in merge
    assert f"MC/train_data.py --path {world} --nodes {world}/mc/x.jsonl --resume" in merge
    assert "#SBATCH --gpus-per-task=2" in plan(world, gpus_per_task=2)["task_script"]
    assert "train_data" not in plan(world, then="none")["merge_script"]
    assert slurm.after_tasks("7", 3) == "afterok:7_0:7_1:7_2"


def test_bad_launches_fail_before_anything_is_queued(world):
    with pytest.raises(DataError, match="does not know --no_such_option"):
        plan(world, "--no_such_option", "1")
    with pytest.raises(DataError, match="needs --dataset"):
        slurm.build(slurm.SlurmArgs(path=str(world), stage="rollouts"), [])
    with pytest.raises(DataError, match="--stage must be one of"):
        slurm.build(slurm.SlurmArgs(path=str(world), stage="nope"), [])
    with pytest.raises(DataError, match="no --shard option"):
        slurm.stage_config(ROOT / "MC" / "train_data.py", [])


def test_dry_run_prints_both_scripts(world, capsys):
    slurm.main(["--path", str(world), "--stage", "rollouts", "--dataset", "world", "--dry_run", "--",
                "--dataset", "train", "--questions", "world/data/train.jsonl", *SIM])
    out = capsys.readouterr().out
    assert "inference/world.py" in out and "#SBATCH --gpus-per-task=1" in out
    assert f"--out {world}/runs/rollouts/train.jsonl" in out and "afterok:<array>_0" in out
    assert not (world / "runs" / "slurm").exists()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if why := unavailable():
        pytest.skip(why)
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    c.start()
    yield c
    c.stop()


def submit(cluster, world, name):
    done = subprocess.run([sys.executable, "-m", "dreamprm.slurm", "--path", str(world), "--stage", "mc",
                           "--shards", "4", "--gpus_per_task", "0", "--cpus_per_task", "1", "--job_dir", f"jobs/{name}",
                           "--", "--tree", "mc/tree.jsonl", "--out", f"mc/{name}.jsonl", *SIM],
                          cwd=ROOT, env={**ENV, **cluster.env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    import json
    return json.loads((world / "jobs" / name / "jobs.json").read_text())


def merged_equals_unsharded(world, name):
    assert (world / "mc" / f"{name}.jsonl").read_bytes() == (world / "mc" / "full.jsonl").read_bytes()
    # the merge job ran the next stage on the merged labels: the same train data as the unsharded run's
    assert (world / "runs" / "mc" / "train.jsonl").read_bytes() == (world / "mc" / "full_train.jsonl").read_bytes()


def test_a_four_task_array_and_its_merge_equal_the_unsharded_run(cluster, world):
    record = submit(cluster, world, "array")
    merge = record["merge"]
    cluster.wait_for(lambda jobs: jobs.get(merge) in ("COMPLETED", "FAILED", "CANCELLED"), 300, "the merge job")
    assert cluster.jobs()[merge] == "COMPLETED", (world / "jobs" / "array" / "merge.log").read_text()[-2000:]
    assert {cluster.jobs()[f"{record['array']}_{i}"] for i in range(4)} == {"COMPLETED"}
    merged_equals_unsharded(world, "array")


def test_a_task_cancelled_midway_and_requeued_still_merges_to_the_unsharded_run(cluster, world):
    (world / "runs" / "mc" / "train.jsonl").unlink(missing_ok=True)
    record = submit(cluster, world, "requeued")
    array, merge = record["array"], record["merge"]
    shard0 = world / "mc" / "requeued.shard-0-of-4.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (shard0.exists() and shard0.read_text().count("\n") >= 5):
        time.sleep(0.05)
    subprocess.run(["scancel", f"{array}_0"], env=cluster.env, check=True)
    cluster.wait_for(lambda jobs: jobs.get(f"{array}_0") == "CANCELLED", 60, "the cancel")
    written = shard0.read_text().count("\n")
    assert written >= 5 and not Path(str(shard0) + ".done").exists(), "task 0 was not cancelled mid-way"
    # the merge job cannot run now: one of its tasks ended without success
    cluster.wait_for(lambda jobs: all(jobs.get(f"{array}_{i}") != "RUNNING" for i in range(4)), 300, "the other tasks")
    assert cluster.jobs()[merge] == "PENDING"
    done = subprocess.run([sys.executable, "-m", "dreamprm.slurm", "requeue", "--path", str(world), "--job_dir",
                           "jobs/requeued"], cwd=ROOT, env={**ENV, **cluster.env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "requeued tasks [0]" in done.stdout, done.stdout + done.stderr
    cluster.wait_for(lambda jobs: jobs.get(merge) in ("COMPLETED", "FAILED", "CANCELLED"), 300, "the merge job")
    assert cluster.jobs()[merge] == "COMPLETED", (world / "jobs" / "requeued" / "merge.log").read_text()[-2000:]
    log = (world / "jobs" / "requeued" / "task-0.log").read_text()
    assert "restart 1" in log and f"{written} already in" in log  # the requeued task resumed, it did not restart
    merged_equals_unsharded(world, "requeued")


def test_the_multi_node_bi_level_launch_resolves_its_world_under_srun_and_torchrun(cluster, tmp_path):
    """reweighting/slurm.sbatch as documented: two Slurm tasks stand for two nodes, each starting a torchrun of two
    ranks; the dry run forms the process group and reports world size 4, the node ranks and the batches."""
    log = tmp_path / "reweighting.log"
    env = {**ENV, **cluster.env, "NPROC_PER_NODE": "2", "DREAMPRM_PYTHON": sys.executable}
    job = subprocess.run(["sbatch", "--parsable", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=1",
                          "--oversubscribe", f"--output={log}", str(ROOT / "reweighting" / "slurm.sbatch"),
                          "--strategy", "distributed", "--dry_run", "--train_batch_size", "2", "--meta_batch_size",
                          "3", "--gpu", "cpu"], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    jid = job.stdout.strip()
    cluster.wait_for(lambda jobs: jobs.get(jid) in ("COMPLETED", "FAILED", "CANCELLED"), 180, "the dry run")
    text = log.read_text()
    assert cluster.jobs()[jid] == "COMPLETED", text[-3000:]
    assert "world size 4 on 2 node(s)" in text and "per optimiser step: train 8, meta 12" in text, text[-3000:]
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert [r[:3] for r in rows] == [["0", "0", "0"], ["1", "0", "1"], ["2", "1", "0"], ["3", "1", "1"]]


def test_a_launch_that_cannot_work_is_refused_before_training():
    from dreamprm import launch

    with pytest.raises(RuntimeError, match="needs at least 2 ranks"):
        launch.layout("distributed", 1, 1, env={})
    with pytest.raises(RuntimeError, match="every rank would train its own copy"):
        launch.layout("default", 1, 1, env={"WORLD_SIZE": "2"})
    env = {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4", "RANK": "1", "LOCAL_RANK": "1"}
    row = launch.layout("zero", 2, 1, env=env, gpus_per_node=8)
    assert row["global_train_batch"] == 8 and row["gpu"] == 1
    rows = [launch.layout("zero", 2, 1, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, gpus_per_node=2)
            for r in range(4)]
    assert "runs 4 ranks on 2 GPUs" in launch.check(rows)[0]
    assert launch.check(rows[:1] + rows[2:]) and "not 0..2" in launch.check(rows[:1] + rows[2:])[0]


def test_a_vllm_task_requests_as_many_gpus_as_its_engine_spans(world):
    assert "--gpus-per-task=2" in plan(world, "--backend", "vllm", "--tensor_parallel_size", "2",
                                       gpus_per_task=2)["task_script"]
    with pytest.raises(DataError, match="make them equal"):
        plan(world, "--backend", "vllm", "--tensor_parallel_size", "2", gpus_per_task=1)


def test_the_numbered_scripts_have_a_slurm_path(world):
    common = ["--path", str(world), "--dry_run", "--backend", "simulated", "--policy", "world/policy.json",
              "--judge", "none"]
    done = subprocess.run(["bash", "scripts/03_mc.sh", *common, "--tree", "mc/tree.jsonl",
                           "--slurm", "--shards 3 --gpus_per_task 0 --partition gpu"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MC/tree.py" in done.stdout and "#SBATCH --array=0-2" in done.stdout and "#SBATCH --partition=gpu" in done.stdout
    assert "MC/estimate.py" in done.stdout and "MC/train_data.py" in done.stdout
    done = subprocess.run(["bash", "scripts/02_rollouts.sh", *common, "world", "--dataset", "train", "--questions",
                           "world/data/train.jsonl", "--slurm", "--shards 2 --gpus_per_task 0"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "inference/world.py" in done.stdout and "#SBATCH --array=0-1" in done.stdout
    done = subprocess.run(["bash", "scripts/08_step_eval.sh", "--path", str(world), "--dry_run", "--prm", "random",
                           "--data", "world/data/train.jsonl", "--slurm", "--shards 2 --gpus_per_task 0"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "BoN/step_eval.py" in done.stdout, done.stderr[-2000:]
    assert not (world / "runs" / "slurm").exists()


def test_scoring_stages_merge_each_output_then_rerun_themselves(world):
    cfg = slurm.SlurmArgs(path=str(world), stage="bon", shards=2, gpus_per_task=0)
    p = slurm.build(cfg, ["--prm", "prm", "--benchmarks", "bench_a,bench_b", "--name", "x"])
    merge = p["merge_script"].splitlines()
    assert sum("dreamprm.shards" in line and "compgen -G" in line for line in merge) == 2
    assert f"{world}/runs/bon/x/bench_b.scores.jsonl" in p["merge_script"]
    assert merge[-1].endswith("--name x --resume") and "BoN/score.py" in merge[-1] and "--shard" not in merge[-1]
    cfg = slurm.SlurmArgs(path=str(world), stage="step_eval", shards=2, gpus_per_task=0)
    p = slurm.build(cfg, ["--prm", "random", "--data", "world/steps/s.jsonl"])
    assert f"--out {world}/runs/stepeval/dreamprm/s.scores.jsonl" in p["merge_script"]
    assert "BoN/step_eval.py" in p["merge_script"].splitlines()[-1]
