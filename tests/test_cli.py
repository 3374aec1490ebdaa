import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dreamprm.cli import StageArgs, parse_args
from dreamprm.io import DataError


@dataclass
class DemoConfig(StageArgs):
    """A demo stage."""
    n: int = field(default=8, metadata={"help": "responses per question"})
    data: str = field(default="data/q.jsonl", metadata={"help": "question file"})


def test_defaults_and_overrides(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = parse_args(DemoConfig, [])
    assert (cfg.n, cfg.seed, cfg.resume, cfg.gpu, cfg.out) == (8, 42, False, None, None)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    cfg = parse_args(DemoConfig, ["--n", "4", "--resume", "--gpu", "cpu", "--seed", "7", "--out", "o.jsonl"])
    assert (cfg.n, cfg.resume, cfg.seed, cfg.out) == (4, True, 7, "o.jsonl")


def test_gpu_ids_set_visible_devices_and_need_cuda(monkeypatch):
    import torch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if torch.cuda.is_available():
        parse_args(DemoConfig, ["--gpu", "0"])
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    else:  # --gpu N without CUDA must not quietly run on the CPU
        with pytest.raises(DataError, match=r"--gpu 2,3: no CUDA device .* pass --gpu cpu"):
            parse_args(DemoConfig, ["--gpu", "2,3"])


def test_gpu_cpu_hides_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    cfg = parse_args(DemoConfig, ["--gpu", "cpu"])
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and cfg.device == "cpu"


def test_paths_resolve_against_repo_root(tmp_path):
    cfg = parse_args(DemoConfig, ["--path", str(tmp_path)])
    assert cfg.resolve(cfg.data) == tmp_path / "data/q.jsonl"
    assert cfg.resolve("/abs/x.json") == Path("/abs/x.json")


def test_seed_is_applied():
    import torch

    parse_args(DemoConfig, ["--seed", "3"])
    a = torch.rand(3)
    parse_args(DemoConfig, ["--seed", "3"])
    assert torch.equal(a, torch.rand(3))


def test_help_lists_common_and_stage_options(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("from dataclasses import dataclass, field\nfrom dreamprm.cli import StageArgs, parse_args\n"
                      "@dataclass\nclass C(StageArgs):\n    \"\"\"Roll out.\"\"\"\n"
                      "    n: int = field(default=8, metadata={'help': 'responses per question'})\n"
                      "parse_args(C)\n")
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0
    for flag in ("--path", "--gpu", "--seed", "--out", "--resume", "--n", "responses per question", "Roll out."):
        assert flag in out.stdout


def test_unknown_option_is_an_error():
    with pytest.raises(SystemExit):
        parse_args(DemoConfig, ["--nope", "1"])


def test_an_input_error_is_one_line_unless_debug(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("from dreamprm.cli import StageArgs, parse_args\nfrom dreamprm.io import read_records\n"
                      "cfg = parse_args(StageArgs)\nread_records(cfg.resolve('missing.jsonl'))\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, str(script), "--path", str(tmp_path)], capture_output=True, text=True, env=env)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"error: {tmp_path}/missing.jsonl: no such file  (--debug shows the traceback)"]
    out = subprocess.run([sys.executable, str(script), "--path", str(tmp_path), "--debug"], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 1 and "Traceback" in out.stderr and "no such file" in out.stderr


def test_output_is_locked_and_refused_when_it_exists(tmp_path):
    (tmp_path / "o.jsonl").write_text("{}\n")
    cfg = parse_args(DemoConfig, ["--path", str(tmp_path)])
    with pytest.raises(FileExistsError, match="pass --resume"):
        cfg.output("o.jsonl")
    assert (tmp_path / ".o.jsonl.lock").read_text().strip() == str(os.getpid())
    d = parse_args(DemoConfig, ["--path", str(tmp_path), "--resume"]).output("run", directory=True)
    assert (d / ".lock").is_file()
    assert parse_args(DemoConfig, ["--path", str(tmp_path)]).output("run", directory=True) == d  # only a lock in it
