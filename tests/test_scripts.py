"""The numbered launchers (scripts/0*.sh, scripts/_common.sh, scripts/route.py): --help runs nothing, options
reach the stages that take them, --gpu is checked, and every stage script imports its own checkout's package."""
import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, load_script

sys.path.insert(0, str(ROOT / "scripts"))
import route  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def bash(script, *args, cwd=None, timeout=300):
    return subprocess.run(["bash", str(ROOT / "scripts" / script), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=ENV, timeout=timeout)


def state(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def finished(p: subprocess.Popen):
    code = p.wait(timeout=300)
    stdout, stderr = p.communicate()
    return subprocess.CompletedProcess(p.args, code, stdout, stderr)


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """The slow runs, all started at once (each spends seconds importing torch); a test waits for its own."""
    from dreamprm.miniworld.world import build

    def launch(cmd, cwd, **env):
        return subprocess.Popen(cmd, cwd=cwd, env=dict(ENV, **env), text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    runs = {}
    # --help with existing outputs under --path
    outputs = tmp_path_factory.mktemp("outputs")
    for rel in ("runs/rollouts/mmpr.jsonl", "runs/mc/tree.jsonl", "runs/mc/estimate.jsonl", "runs/mc/train.jsonl",
                "runs/mc/estimate.jsonl.done"):
        (outputs / rel).parent.mkdir(parents=True, exist_ok=True)
        (outputs / rel).write_text('{"id": "old"}\n')
    runs["help"] = (outputs, state(outputs),
                    launch(["bash", str(ROOT / "scripts/03_mc.sh"), "--path", str(outputs), "--gpu", "cpu", "--help"],
                           ROOT))
    # --gpu 0 and --gpu cpu through a launcher, on a mini world with its SIMULATED policy
    world = tmp_path_factory.mktemp("world")
    build(world / "world", root=world, seed=0, n_train=2, n_meta=2, n_test=2)
    sim = ["world", "--questions", "world/data/bars.jsonl", "--backend", "simulated", "--policy", "world/policy.json",
           "--judge", "none", "--n", "1"]
    for gpu in ("0", "cpu"):
        runs[f"gpu {gpu}"] = (world, None, launch(["bash", str(ROOT / "scripts/02_rollouts.sh"), "--path", str(world),
                                                   "--gpu", gpu, *sim, "--out", f"runs/gpu-{gpu}.jsonl"], outputs))
    # a copy of the checkout, and a decoy dreamprm package first on PYTHONPATH
    tmp = tmp_path_factory.mktemp("checkout")
    copy = tmp / "checkout"
    for folder in ("dreamprm", "MC"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(copy / "dreamprm" / "__init__.py", "a") as f:  # the copy says it was the one imported
        f.write("\nimport os as _os; open(_os.environ['DREAMPRM_MARK'], 'w').write(__file__)\n")
    decoy = tmp / "decoy" / "dreamprm"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the decoy dreamprm was imported')\n")
    runs["checkout"] = (copy, tmp / "imported-from",
                        launch([sys.executable, str(copy / "MC/tree.py"), "--help"], tmp,
                               PYTHONPATH=str(decoy.parent), DREAMPRM_MARK=str(tmp / "imported-from")))
    yield runs
    for *_, p in runs.values():
        if p.poll() is None:
            p.kill()


def test_help_prints_usage_and_every_stage_help_and_runs_nothing(started):
    outputs, before, p = started["help"]
    done = finished(p)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Stages 3-5: step-prefix tree") and "--dry_run" in done.stdout
    for stage in ("tree.py", "estimate.py", "train_data.py"):
        assert f"== options of MC/{stage}" in done.stdout and f"usage: {stage}" in done.stdout
    assert "--max_rollouts" in done.stdout and "--per_domain" in done.stdout
    assert "== stage" not in done.stdout and "[setup]" not in done.stdout + done.stderr  # nothing ran or installed
    assert state(outputs) == before  # every output untouched, nothing new


def commands(done) -> dict[str, list[str]]:
    """The stage commands a --dry_run printed: {stage file name: its arguments}."""
    assert done.returncode == 0, done.stderr
    out = {}
    for line in done.stdout.splitlines():
        if not line.startswith("=="):
            argv = shlex.split(line)
            script = next(a for a in argv if a.endswith(".py"))
            out[Path(script).name] = argv[argv.index(script) + 1:]
    return out


def value(argv, option):
    return [argv[i + 1] for i, a in enumerate(argv) if a == option]


def test_mc_options_reach_each_stage_that_takes_them(tmp_path):
    done = bash("03_mc.sh", "--path", tmp_path, "--gpu", "cpu", "--seed", "5", "--per_domain", "7",
                "--max_rollouts", "9", "--responses", "runs/r a.jsonl", "--max_skip_fraction", "0.3",
                "--tree", "t.jsonl", "--nodes", "n.jsonl", "--backend_args", '{"x": 1}', "--dry_run")
    cmd = commands(done)
    assert list(cmd) == ["tree.py", "estimate.py", "train_data.py"]
    tree, est, train = cmd["tree.py"], cmd["estimate.py"], cmd["train_data.py"]
    for argv in (tree, est, train):
        assert value(argv, "--seed") == ["5"] and value(argv, "--max_skip_fraction") == ["0.3"]
        assert value(argv, "--path") == [str(tmp_path)] and value(argv, "--gpu") == ["cpu"]
    assert value(tree, "--responses") == ["runs/r a.jsonl"] and "--responses" not in est + train
    assert value(est, "--max_rollouts") == ["9"] and "--max_rollouts" not in tree + train
    assert value(train, "--per_domain") == ["7"] and "--per_domain" not in tree + est
    assert value(est, "--backend_args") == ['{"x": 1}']
    # --tree / --nodes link two stages: the file one writes and the next reads
    assert value(tree, "--out") == ["t.jsonl"] and value(est, "--tree") == ["t.jsonl"]
    assert value(est, "--out") == ["n.jsonl"] and value(train, "--nodes") == ["n.jsonl"]
    assert "--resume" in tree and "--resume" in train and "--resume" not in est
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    sharded = commands(bash("03_mc.sh", "--path", tmp_path, "--shard", "1/4", "--dry_run"))
    assert list(sharded) == ["tree.py", "estimate.py"] and value(sharded["estimate.py"], "--shard") == ["1/4"]


@pytest.mark.parametrize("args, message", [
    (["--bogus", "1"], "unknown option --bogus"),
    (["--out", "x.jsonl"], "--out is ambiguous"),
    (["--seed"], "--seed needs a value"),
    (["stray"], "unexpected argument 'stray'"),
    (["--path"], "--path needs a value"),
    (["--path", "/no/such/dir"], "--path /no/such/dir: no such directory"),
])
def test_mc_bad_options_are_one_line_errors(args, message):
    done = bash("03_mc.sh", *args, "--dry_run")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done
    assert done.stdout == ""  # refused before any stage


def test_rollouts_dataset_name_anywhere_and_checked(tmp_path):
    cmd = commands(bash("02_rollouts.sh", "--path", tmp_path, "--resume", "--n", "2", "chartqa", "--dry_run"))
    argv = cmd["mmpr.py"]  # an MMPR domain: mmpr.py with --domains and its own output
    assert value(argv, "--domains") == ["chartqa"] and value(argv, "--out") == ["runs/rollouts/mmpr-chartqa.jsonl"]
    assert "--resume" in argv and value(argv, "--n") == ["2"] and "chartqa" not in argv[argv.index("--resume"):]
    cmd = commands(bash("02_rollouts.sh", "--path", tmp_path, "--gpu", "cpu", "mathvista", "--shard", "0/2", "--dry_run"))
    assert value(cmd["mathvista.py"], "--shard") == ["0/2"] and value(cmd["mathvista.py"], "--gpu") == ["cpu"]
    for args, message in [([], "no DATASET"), (["mathvista", "mmstar"], "unexpected argument 'mmstar'"),
                          (["meta_data"], "not a dataset"), (["--n", "2", "--frob", "mathvista"], "unknown option --frob")]:
        done = bash("02_rollouts.sh", "--path", tmp_path, *args, "--dry_run")
        assert done.returncode == 2 and message in done.stderr and done.stdout == "", (args, done)


@pytest.mark.parametrize("stage, cls", [("MC/tree.py", "TreeArgs"), ("MC/estimate.py", "EstimateArgs"),
                                        ("MC/train_data.py", "TrainDataArgs"), ("inference/mmpr.py", "MMPRArgs")])
def test_route_reads_the_same_options_as_the_stage(stage, cls):
    real = [f.name for f in dataclasses.fields(getattr(load_script(stage), cls))]
    assert list(route.stage_fields(stage)) == real


def test_every_launcher_declares_its_stages():
    for script in sorted((ROOT / "scripts").glob("0*.sh")):
        text = script.read_text()
        assert "\nSTAGES=(" in text and "run_stage " in text, script.name  # --help and --dry_run work everywhere


def test_gpu_without_cuda_is_one_line_error_and_gpu_cpu_runs(started):
    import torch

    world, _, p = started["gpu 0"]
    done = finished(p)
    if not torch.cuda.is_available():
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: --gpu 0: no CUDA device") and "Traceback" not in done.stderr
        assert not (world / "runs/gpu-0.jsonl").exists()
    done = finished(started["gpu cpu"][2])
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and len((world / "runs/gpu-cpu.jsonl").read_text().splitlines()) == 2


def test_stage_scripts_import_their_own_checkout(started):
    copy, mark, p = started["checkout"]
    done = finished(p)
    assert done.returncode == 0 and "usage: tree.py" in done.stdout, done.stderr
    assert mark.read_text() == str(copy / "dreamprm" / "__init__.py")  # not the decoy, not /work/main's
