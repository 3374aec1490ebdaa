import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dreamprm.cli import StageArgs, parse_args


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
    cfg = parse_args(DemoConfig, ["--n", "4", "--resume", "--gpu", "2,3", "--seed", "7", "--out", "o.jsonl"])
    assert (cfg.n, cfg.resume, cfg.seed, cfg.out) == (4, True, 7, "o.jsonl")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


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
