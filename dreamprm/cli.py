"""Command-line conventions shared by every stage script.

A stage declares one config dataclass that extends `StageArgs`; the dataclass doubles as the CLI (as in
TRL), so every option has one name, one default and one help text:

    @dataclass
    class RolloutConfig(StageArgs):
        n: int = field(default=8, metadata={"help": "responses per question"})

    cfg = parse_args(RolloutConfig)        # --help, --path, --gpu, --seed, --out, --resume come for free
    questions = read_records(cfg.resolve(cfg.questions), skips=cfg.skips(...))

`parse_args` also sets the rules every stage keeps: a fatal input error is one line on stderr (no traceback
unless --debug), `--gpu N` on a machine without CUDA is an error, and the seed is applied.
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence, TypeVar

from .io import MAX_IMAGE_PIXELS, DataError, ImageCheck, Skips, lock_output

T = TypeVar("T", bound="StageArgs")

# Errors a user fixes by changing the input or the command: one line is the whole story.
USER_ERRORS = (DataError, OSError)


@dataclass
class StageArgs:
    path: str = field(default=".", metadata={"help": "repository root; every relative path resolves against it"})
    gpu: str | None = field(
        default=None, metadata={"help": "GPU ids for CUDA_VISIBLE_DEVICES, e.g. '0,1'; 'cpu' forces the CPU"})
    seed: int = field(default=42, metadata={"help": "random seed (python, numpy, torch)"})
    out: str | None = field(default=None, metadata={"help": "output file or directory (stage-specific default)"})
    resume: bool = field(default=False, metadata={"help": "continue an interrupted run, skipping finished work"})
    max_skip_fraction: float = field(default=0.1, metadata={
        "help": "bad input records are skipped and counted; more than this fraction of an input is an error"})
    max_image_pixels: int = field(default=MAX_IMAGE_PIXELS, metadata={
        "help": "an image with more pixels is skipped with its records (default: PIL's decompression-bomb limit)"})
    debug: bool = field(default=False, metadata={"help": "print the full traceback of an input error"})

    def resolve(self, p: str | Path) -> Path:
        """A path from the command line: absolute as given, relative to --path otherwise."""
        p = Path(p).expanduser()
        return p if p.is_absolute() else Path(self.path).expanduser().resolve() / p

    def output(self, p: str | Path, why: str = "", directory: bool = False) -> Path:
        """An output of a stage that rewrites it whole: locked for this process (one writer per output), and
        refused if it exists, unless --resume."""
        out = self.resolve(p)
        lock_output(out, directory)
        exists = any(f.name != ".lock" for f in out.iterdir()) if directory and out.is_dir() else out.exists()
        if exists and not self.resume:
            raise FileExistsError(f"{out} exists; pass --resume to rebuild it{why} or remove it")
        return out

    def skips(self, source: str | Path) -> Skips:
        return Skips(str(source))

    @cached_property
    def images(self) -> ImageCheck:
        """One image check per run: every image is opened once, by whichever reader meets it first."""
        return ImageCheck(self.max_image_pixels)

    def image_problem(self, p: str | Path | None):
        """None for no image or a good one; else the BadRecord (missing, zero-byte, unreadable, too large)."""
        return None if not p else self.images.problem(self.resolve(p))

    @property
    def device(self) -> str:
        if self.gpu == "cpu":
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def announce(self, what: str, precision: str = "auto") -> None:
        """Print where a model runs, before it is loaded: `<what>: device cuda (2 GPUs), precision bf16`."""
        import torch

        from .models import pick_dtype

        dev = self.device
        extra = f" ({torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)})" if dev == "cuda" else ""
        dtype = str(pick_dtype(precision, torch.device(dev))).removeprefix("torch.")
        print(f"{what}: device {dev}{extra}, precision {dtype}")


def apply_gpu(gpu: str | None) -> None:
    """Must run before CUDA is initialised; 'cpu' hides every GPU."""
    if gpu is None:
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if gpu == "cpu" else gpu


def check_gpu(gpu: str | None) -> None:
    """`--gpu N` asks for a GPU: running on the CPU instead would be a silent, hours-long surprise."""
    if gpu in (None, "", "cpu"):
        return
    import torch

    if not torch.cuda.is_available():
        raise DataError(f"--gpu {gpu}: no CUDA device is available (torch {torch.__version__}); "
                        "pass --gpu cpu to run on the CPU")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    import torch

    torch.manual_seed(seed)


def one_line_errors(exc_type, exc, tb) -> None:
    """sys.excepthook of a stage: a user error is `error: <message>` on stderr (exit status 1)."""
    if issubclass(exc_type, USER_ERRORS):
        print(f"error: {exc}  (--debug shows the traceback)", file=sys.stderr)
    else:
        sys.__excepthook__(exc_type, exc, tb)


def parse_args(cls: type[T], argv: Sequence[str] | None = None) -> T:
    """Parse the command line into `cls`, then apply --debug, --gpu and --seed."""
    from transformers import HfArgumentParser

    doc = (cls.__doc__ or "").strip()
    if doc.startswith(cls.__name__ + "("):  # dataclass's generated signature, not a description
        doc = ""
    parser = HfArgumentParser(cls, description=doc)
    cfg, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if argv is None:  # a real command line, not a test calling main(argv)
        sys.excepthook = sys.__excepthook__ if cfg.debug else one_line_errors
    if not 0 <= cfg.max_skip_fraction <= 1:
        raise DataError(f"--max_skip_fraction must be in [0, 1], got {cfg.max_skip_fraction}")
    apply_gpu(cfg.gpu)
    check_gpu(cfg.gpu)
    seed_everything(cfg.seed)
    return cfg
