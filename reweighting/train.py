"""Stage 7: train the PRM and the domain weights by bi-level optimisation (or `--baseline`: vanilla PRM).

    python reweighting/train.py --train runs/mc/train.jsonl --meta runs/meta/meta.jsonl --out runs/reweighting
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dreamprm.cli import parse_args
from dreamprm.launch import dry_run
from dreamprm.reweighting import ReweightConfig, train

if __name__ == "__main__":
    cfg = parse_args(ReweightConfig)
    if cfg.dry_run:
        dry_run(cfg.strategy, cfg.train_batch_size, cfg.meta_batch_size)
        sys.exit(0)
    summary = train(cfg)
    print("domain weights:", ", ".join(f"{k} {v:.3f}" for k, v in sorted(summary["weights"].items(),
                                                                         key=lambda kv: -kv[1])))
    print(f"PRM: {summary['prm']}; meta records scored as one step (no step text): {summary['meta_without_steps']}")
    skipped = {k: v["skipped"] for k, v in summary["skipped"].items() if v["skipped"]}
    if skipped:
        print("skipped records (kinds and first file:line in summary.json): "
              + ", ".join(f"{k} {n}" for k, n in skipped.items()))
