"""Command-line conventions shared by every stage script.

A stage declares one config dataclass that extends `StageArgs`; the dataclass doubles as the CLI (as in
TRL), so every option has one name, one default and one help text:

    @dataclass
    class RolloutConfig(StageArgs):
        n: int = field(default=8, metadata={"help": "responses per question"})

    cfg = parse_args(RolloutConfig)        # --help, --path, --gpu, --seed, --out, --resume come for free
    questions = read_records(cfg.resolve(cfg.questions))
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TypeVar

T = TypeVar("T", bound="StageArgs")


@dataclass
class StageArgs:
    path: str = field(default=".", metadata={"help": "repository root; every relative path resolves against it"})
    gpu: str | None = field(
        default=None, metadata={"help": "GPU ids for CUDA_VISIBLE_DEVICES, e.g. '0,1'; 'cpu' forces the CPU"})
    seed: int = field(default=42, metadata={"help": "random seed (python, numpy, torch)"})
    out: str | None = field(default=None, metadata={"help": "output file or directory (stage-specific default)"})
    resume: bool = field(default=False, metadata={"help": "continue an interrupted run, skipping finished work"})

    def resolve(self, p: str | Path) -> Path:
        """A path from the command line: absolute as given, relative to --path otherwise."""
        p = Path(p).expanduser()
        return p if p.is_absolute() else Path(self.path).expanduser().resolve() / p

    def output(self, p: str | Path, why: str = "") -> Path:
        """An output file of a stage that rewrites it whole: refused if it exists, unless --resume."""
        out = self.resolve(p)
        if out.exists() and not self.resume:
            raise SystemExit(f"{out} exists; pass --resume to rebuild it{why} or remove it")
        return out

    @property
    def device(self) -> str:
        if self.gpu == "cpu":
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def apply_gpu(gpu: str | None) -> None:
    """Must run before CUDA is initialised; 'cpu' hides every GPU."""
    if gpu is None:
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if gpu == "cpu" else gpu


def seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    import torch

    torch.manual_seed(seed)


def parse_args(cls: type[T], argv: Sequence[str] | None = None) -> T:
    """Parse the command line into `cls`, then apply --gpu and --seed."""
    from transformers import HfArgumentParser

    doc = (cls.__doc__ or "").strip()
    if doc.startswith(cls.__name__ + "("):  # dataclass's generated signature, not a description
        doc = ""
    parser = HfArgumentParser(cls, description=doc)
    cfg, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    apply_gpu(cfg.gpu)
    seed_everything(cfg.seed)
    return cfg
