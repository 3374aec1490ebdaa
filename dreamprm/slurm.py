"""Run a generation stage on a Slurm cluster: one array task per shard, then a merge job (issue 15).

    python -m dreamprm.slurm --path . --stage mc --shards 16 --gpus_per_task 1 --partition gpu --time 12:00:00 \
        -- --backend vllm --policy OpenGVLab/InternVL2_5-8B-MPO
    python -m dreamprm.slurm --path . --stage rollouts --dataset mathvista --shards 4 -- --backend vllm
    python -m dreamprm.slurm --path . --stage bon --shards 4 -- --prm runs/reweighting/prm --name dreamprm
    python -m dreamprm.slurm requeue --path . --job_dir runs/slurm/mc     # after a task was cancelled or failed

Array task i runs the stage with `--shard i/n --resume` (the options after `--` are the stage's own and are
checked here, before anything is queued). `--resume` makes a task requeue-safe: a preempted, cancelled or failed
task that starts again keeps what it already wrote (one append-only writer per shard, `dreamprm.io.AppendWriter`)
and finishes the rest; the stage writes the same records whatever the interruptions (each record's seed comes
from its key, not from the order), so the merged file equals a single-process run. The merge job depends on
every task (`afterok:<array>_0:<array>_1:...`): it joins the shards (`dreamprm.shards`, which refuses a shard
without its `.done` marker) and runs the next cheap stage (`--then`): the train data after MC; after BoN or
step-level scoring, the same command without --shard, which finds every score done and selects or evaluates.

Slurm requeues a preempted task by itself and the dependency holds. A task that ended (cancelled, failed, timed
out) leaves the merge job waiting with DependencyNeverSatisfied; `requeue` puts every such task back in the queue
(starting at once rather than after Slurm's requeue delay) and re-arms the merge job's dependency, or submits a
new merge job if the old one is gone. The batch scripts, the task logs and jobs.json live in --job_dir.
"""
from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path

from .cli import StageArgs, parse_args
from .io import DataError, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
FINISHED_OK = "COMPLETED"
ENDED = ("CANCELLED", "FAILED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY")


AGAIN = ("again",)  # the merge job reruns the stage itself without --shard: it resumes every record, then reports


@dataclass(frozen=True)
class Stage:
    script: str  # in this checkout; {dataset} filled from --dataset
    then: tuple[str, ...] = ()  # run by the merge job: AGAIN, or the next stage's script and options ({out}: merged)


STAGES = {
    "rollouts": Stage("inference/{dataset}.py"),
    "mc": Stage("MC/estimate.py", ("MC/train_data.py", "--nodes", "{out}", "--resume")),
    "bon": Stage("BoN/score.py", AGAIN),  # then the selection and accuracy, from the merged scores
    "step_eval": Stage("BoN/step_eval.py", AGAIN),  # then the metrics
}


def outputs(stage: str, scfg) -> list[Path]:
    """The unsharded files a stage writes, as its own config resolves them."""
    if stage == "mc":
        return [scfg.resolve(scfg.out)]
    if stage == "rollouts":
        return [scfg.resolve(scfg.out or f"runs/rollouts/{scfg.dataset}.jsonl")]
    if stage == "bon":
        return [scfg.out_dir() / f"{b}.scores.jsonl" for b in scfg.benchmark_list()]
    name = Path(scfg.data).name.removesuffix(".jsonl").removesuffix(".json")
    return [scfg.out_dir() / f"{name}.scores.jsonl"]


@dataclass
class SlurmArgs(StageArgs):
    """Submit a generation stage as a Slurm job array (one task per shard) plus a merge job; options after `--`
    go to the stage."""
    stage: str = field(default="mc", metadata={"help": f"the stage: {', '.join(STAGES)}"})
    dataset: str | None = field(default=None, metadata={
        "help": "rollouts: the dataset whose inference script runs (inference/<dataset>.py), e.g. mathvista"})
    shards: int = field(default=4, metadata={"help": "array tasks; task i runs --shard i/<shards>"})
    gpus_per_task: int = field(default=1, metadata={"help": "GPUs per task (--gpus-per-task; 0: none requested)"})
    cpus_per_task: int = field(default=4, metadata={"help": "CPUs per task"})
    mem: str | None = field(default=None, metadata={"help": "memory per task, e.g. 64G (Slurm's --mem)"})
    partition: str | None = field(default=None, metadata={"help": "Slurm partition"})
    time: str | None = field(default=None, metadata={"help": "time limit per task, e.g. 12:00:00"})
    account: str | None = field(default=None, metadata={"help": "Slurm account"})
    max_running: int | None = field(default=None, metadata={"help": "at most this many tasks at once (%%N)"})
    then: str = field(default="default", metadata={
        "help": "after the merge: default (the stage's next cheap stage, e.g. MC/train_data.py after mc) or none"})
    job_dir: str | None = field(default=None, metadata={
        "help": "batch scripts, task logs and jobs.json (default runs/slurm/<stage>[-<dataset>])"})
    python: str = field(default=sys.executable, metadata={"help": "the Python that runs the stage on the nodes"})
    dry_run: bool = field(default=False, metadata={"help": "print the batch scripts, submit nothing"})


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"slurm_stage_{path.parent.name}_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def stage_config(script: Path, argv: list[str]) -> StageArgs:
    """The stage's options parsed by its own config class, without applying --gpu here (the login node may have
    no GPU): a typo fails now, not after hours in the queue."""
    from transformers import HfArgumentParser

    mod = _load_script(script)
    classes = [c for c in vars(mod).values() if isinstance(c, type) and is_dataclass(c) and issubclass(c, StageArgs)]
    # the script's own class (inference scripts subclass RolloutArgs), else the one it imports (BoN/score.py)
    classes = [c for c in classes if c.__module__ == mod.__name__] or classes
    if len(classes) != 1:
        raise DataError(f"{script}: expected one stage config class, found {len(classes)}")
    cfg, unknown = HfArgumentParser(classes[0]).parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        raise DataError(f"{script.relative_to(REPO)} does not know {' '.join(unknown)}")
    if not hasattr(cfg, "shard"):
        raise DataError(f"{script.relative_to(REPO)} has no --shard option; it cannot run as an array")
    return cfg


def _strip(argv: list[str], *names: str) -> list[str]:
    """argv without the launcher-owned options (--path, --shard, --resume): the tasks set those themselves."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in names:
            skip = "=" not in a and name != "--resume"
            continue
        out.append(a)
    return out


def header(cfg: SlurmArgs, name: str, log: str, array: str | None = None) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={log}", "#SBATCH --open-mode=append",
             "#SBATCH --requeue"]
    if array:
        lines.append(f"#SBATCH --array={array}")
    for opt, value in (("partition", cfg.partition), ("account", cfg.account), ("time", cfg.time)):
        if value:
            lines.append(f"#SBATCH --{opt}={value}")
    return lines


def _q(words) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


def build(cfg: SlurmArgs, stage_argv: list[str]) -> dict:
    """The two batch scripts and where things go; nothing is written or submitted."""
    if cfg.stage not in STAGES:
        raise DataError(f"--stage must be one of {', '.join(STAGES)}, got {cfg.stage!r}")
    if cfg.shards < 1:
        raise DataError(f"--shards must be at least 1, got {cfg.shards}")
    if cfg.then not in ("default", "none"):
        raise DataError(f"--then must be default or none, got {cfg.then!r}")
    st = STAGES[cfg.stage]
    if "{dataset}" in st.script and not cfg.dataset:
        raise DataError(f"--stage {cfg.stage} needs --dataset (the inference script to run)")
    script = REPO / st.script.format(dataset=cfg.dataset)
    if not script.is_file():
        raise DataError(f"{script}: no such stage script (check --dataset)")
    root = Path(cfg.path).resolve()
    argv = _strip(stage_argv, "--path", "--shard", "--resume")
    scfg = stage_config(script, ["--path", str(root), *argv])
    tp = getattr(scfg, "tensor_parallel_size", 1)
    if getattr(scfg, "backend", None) == "vllm" and tp != max(cfg.gpus_per_task, 1):
        raise DataError(f"each task's vLLM engine spans --tensor_parallel_size {tp} GPU(s) but --gpus_per_task is "
                        f"{cfg.gpus_per_task}: make them equal (1 and 1: one engine per GPU, one task per GPU)")
    outs = outputs(cfg.stage, scfg)
    tag = cfg.stage + (f"-{cfg.dataset}" if cfg.dataset else "")
    job_dir = root / (cfg.job_dir or f"runs/slurm/{tag}")
    array = f"0-{cfg.shards - 1}" + (f"%{cfg.max_running}" if cfg.max_running else "")
    task = header(cfg, f"dreamprm-{tag}", f"{job_dir}/task-%a.log", array)
    task += [f"#SBATCH --cpus-per-task={cfg.cpus_per_task}"]
    if cfg.gpus_per_task:
        task.append(f"#SBATCH --gpus-per-task={cfg.gpus_per_task}")
    if cfg.mem:
        task.append(f"#SBATCH --mem={cfg.mem}")
    run = [cfg.python, script, "--path", root, *argv]
    task += ["set -euo pipefail", f"cd {shlex.quote(str(root))}",
             'echo "== task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT on $(hostname), restart '
             '${SLURM_RESTART_COUNT:-0}"',
             # a requeued task starts again with --resume: what the last attempt wrote is kept
             f'exec {_q(run)} --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --resume', ""]
    merge = header(cfg, f"dreamprm-{tag}-merge", f"{job_dir}/merge.log")
    merge += ["#SBATCH --cpus-per-task=1", "set -euo pipefail", f"cd {shlex.quote(str(root))}"]
    for out in outs:
        merge_one = _q([cfg.python, "-m", "dreamprm.shards", "--path", root, "--out", out])
        if cfg.stage == "bon":  # a benchmark without a candidate file has no shards: left out, as in one process
            pattern = f"{out.stem}.shard-*-of-{cfg.shards}{out.suffix}"
            merge_one = f"if compgen -G {shlex.quote(str(out.parent / pattern))} >/dev/null; then {merge_one}; fi"
        merge.append(merge_one if cfg.shards > 1 else f"test -e {shlex.quote(str(out) + '.done')}")
    if cfg.then == "default" and st.then == AGAIN:
        merge.append(f"{_q(run)} --resume")
    elif cfg.then == "default" and st.then:
        then = [REPO / st.then[0], *(str(a).format(out=outs[0]) for a in st.then[1:])]
        merge.append(_q([cfg.python, *then[:1], "--path", root, *then[1:]]))
    merge.append("")
    return {"stage": cfg.stage, "dataset": cfg.dataset, "out": ", ".join(map(str, outs)), "shards": cfg.shards,
            "job_dir": str(job_dir), "task_script": "\n".join(task), "merge_script": "\n".join(merge)}


def sbatch(args: list[str]) -> str:
    try:
        r = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise DataError("sbatch not found: run this on a Slurm login node (or use --dry_run)") from None
    if r.returncode:
        raise DataError(f"sbatch {' '.join(args)} failed: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip().split(";")[0]


def after_tasks(array_id: str, n: int) -> str:
    # one entry per task, not afterok:<array>: a requeued task that then succeeds satisfies its own entry again
    # once re-armed, while a whole-array dependency stays failed for good once any task failed
    return "afterok:" + ":".join(f"{array_id}_{i}" for i in range(n))


def submit(plan: dict) -> dict:
    job_dir = Path(plan["job_dir"])
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "task.sbatch").write_text(plan["task_script"])
    (job_dir / "merge.sbatch").write_text(plan["merge_script"])
    array_id = sbatch([str(job_dir / "task.sbatch")])
    merge_id = sbatch([f"--dependency={after_tasks(array_id, plan['shards'])}", str(job_dir / "merge.sbatch")])
    record = {k: v for k, v in plan.items() if not k.endswith("_script")} | {"array": array_id, "merge": merge_id}
    atomic_write_text(job_dir / "jobs.json", json.dumps(record, indent=1) + "\n")
    return record


def _scontrol(*args: str, check: bool = True) -> str:
    r = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode:
        raise DataError(f"scontrol {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout if not r.returncode else ""


def job_state(job: str) -> str | None:
    """Slurm's state of one job or array task, None when the controller no longer knows it."""
    out = _scontrol("show", "job", "-o", job, check=False)
    for kv in out.split():
        if kv.startswith("JobState="):
            return kv.split("=", 1)[1]
    return None


def requeue(job_dir: Path) -> dict:
    """Put every ended task of a submission back in the queue and make its merge job wait for them again."""
    record = json.loads((job_dir / "jobs.json").read_text())
    array, n = record["array"], record["shards"]
    again = []
    for i in range(n):
        state = job_state(f"{array}_{i}")
        if state in ENDED:
            _scontrol("requeue", f"{array}_{i}")
            _scontrol("update", f"JobId={array}_{i}", "StartTime=now")  # not after the requeue delay
            again.append(i)
    merge_state = job_state(record["merge"])
    if merge_state == "PENDING":
        _scontrol("update", f"JobId={record['merge']}", f"Dependency={after_tasks(array, n)}")
    elif merge_state != "COMPLETED" or again:
        record["merge"] = sbatch([f"--dependency={after_tasks(array, n)}", str(job_dir / "merge.sbatch")])
        atomic_write_text(job_dir / "jobs.json", json.dumps(record, indent=1) + "\n")
    return {"requeued": again, "merge": record["merge"]}


@dataclass
class RequeueArgs(StageArgs):
    """Requeue the ended (cancelled, failed, timed-out) tasks of a submission and re-arm its merge job."""
    job_dir: str = field(default=None, metadata={"help": "the submission's --job_dir (holds jobs.json)"})


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["requeue"]:
        cfg = parse_args(RequeueArgs, argv[1:])
        if not cfg.job_dir:
            raise SystemExit("--job_dir is required")
        r = requeue(cfg.resolve(cfg.job_dir))
        print(f"requeued tasks {r['requeued'] or 'none'}; merge job {r['merge']} waits for them")
        return
    own, stage_argv = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    cfg = parse_args(SlurmArgs, own)
    plan = build(cfg, stage_argv)
    if cfg.dry_run:
        print(f"# {plan['job_dir']}/task.sbatch\n{plan['task_script']}\n# {plan['job_dir']}/merge.sbatch "
              f"(submitted with --dependency={after_tasks('<array>', cfg.shards)})\n{plan['merge_script']}")
        return
    record = submit(plan)
    print(f"submitted array {record['array']} ({cfg.shards} tasks) and merge job {record['merge']} -> "
          f"{record['out']}; logs and jobs.json in {record['job_dir']}")


if __name__ == "__main__":
    main()
