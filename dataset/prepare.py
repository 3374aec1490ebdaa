"""Stage 1: turn every source into question records {id, input, image_path, ground_truth, dataset, type,
hint, options} (JSONL) with its images saved beside it, from the hub or from local copies (--local).

    python dataset/prepare.py --path . --sources mathvista mmstar
    python dataset/prepare.py --local mmpr=/data/MMPR mathvista=/data/mathvista_testmini.parquet \
        --sources mmpr mathvista
"""
from __future__ import annotations

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dataclasses import dataclass, field
from pathlib import Path

from dataset.sources import (mathvision, mathvista, mmmu, mmmu_pro, mmpr, mmstar, mmvet,  # noqa: E402
                             visualprocessbench, wemath)
from dreamprm.cli import StageArgs, parse_args  # noqa: E402
from dreamprm.data import SourceWriter  # noqa: E402
from dreamprm.io import DataError, Skips, lock_output  # noqa: E402

SOURCES = {m.NAME: m for m in (mmpr, mmmu_pro, mmmu, mathvista, wemath, mathvision, mmvet, mmstar,
                                visualprocessbench)}
# Prepared only when asked for (--sources visualprocessbench): step labels for BoN/step_eval.py, no part of the
# paper's pipeline, and a 501 MB image archive.
OPT_IN = ("visualprocessbench",)


@dataclass
class PrepareConfig(StageArgs):
    """Prepare the training domains (MMPR), the meta set sources (MMMU-Pro, the default; MMMU validation) and
    the five benchmarks; VisualProcessBench (step labels for BoN/step_eval.py) only with --sources."""
    out: str = field(default="data", metadata={"help": "output folder: <out>/<source>.jsonl, <out>/images/<source>/"})
    sources: list[str] = field(default_factory=lambda: [s for s in SOURCES if s not in OPT_IN],
                               metadata={"help": "sources to prepare", "choices": list(SOURCES)})
    local: list[str] = field(default_factory=list, metadata={
        "help": "local copies instead of the hub, as SOURCE=PATH (a parquet/JSON/JSONL file or a folder of "
                "them; for mmpr the folder with meta.json); repeat SOURCE=PATH for several files; a bare PATH "
                "is allowed when one source is chosen"})
    n_per_domain: int = field(default=1000, metadata={"help": "questions sampled per MMPR domain"})
    mmpr_repo: str = field(default=mmpr.HUB_ID, metadata={"help": "hub id of MMPR"})
    mmvet_repo: str = field(default=mmvet.HUB_ID, metadata={
        "help": "hub id of MM-Vet: lmms-lab/MMVet, or whyu/mm-vet (the one the paper's code read)"})
    cache_dir: str | None = field(default=None,
                                  metadata={"help": "datasets / hub cache folder; unset: HF's usual cache"})


def local_paths(cfg: PrepareConfig) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for item in cfg.local:
        name, sep, path = item.partition("=")
        if not sep or name not in SOURCES:
            if len(cfg.sources) != 1:
                raise DataError(f"--local {item}: write SOURCE=PATH (sources: {', '.join(SOURCES)})")
            name, path = cfg.sources[0], item
        out.setdefault(name, []).append(cfg.resolve(path))
    return out


def prepare(name: str, cfg: PrepareConfig, local: list[Path] | None) -> str:
    src = SOURCES[name]
    out = cfg.resolve(cfg.out).resolve() / f"{name}.jsonl"
    lock_output(out)  # one writer per source: its JSONL and its images folder
    w = SourceWriter(out, cfg.path, Skips(name), cfg.max_image_pixels)
    cap = cfg.n_per_domain if getattr(src, "PER_DOMAIN", False) else None
    for row in src.rows(local, cfg):
        if cap is not None and w.by_dataset[row.get("domain")] >= cap:
            continue  # domain full: later rows are only reserves for skipped ones
        w.offer(row, src.convert)  # a bad row is counted with its file:line, never fatal
    return w.close(cfg.max_skip_fraction)


def main(argv=None) -> int:
    cfg = parse_args(PrepareConfig, argv)
    if cfg.cache_dir:  # like every path option: relative to --path
        cfg.cache_dir = str(cfg.resolve(cfg.cache_dir))
    if cfg.n_per_domain < 1:
        raise DataError(f"--n_per_domain must be at least 1, got {cfg.n_per_domain}")
    local = local_paths(cfg)
    failed = []
    for name in dict.fromkeys(cfg.sources):
        hub_id = getattr(cfg, f"{name}_repo", SOURCES[name].HUB_ID)
        where = ", ".join(map(str, local[name])) if name in local else f"hub {hub_id}"
        print(f"[{name}] reading {where}", flush=True)
        try:
            print(f"[{name}] {prepare(name, cfg, local.get(name))}", flush=True)
        except Exception as e:  # one broken source must not stop the others; the exit code reports it
            failed.append(name)
            print(f"[{name}] FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    if failed:
        print(f"failed sources: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
