#!/usr/bin/env bash
# Step-level evaluation: every step of every solution of a step set (VisualProcessBench, or the mini world's)
# scored by a PRM (resumable), then macro-F1, first-error identification and AUROC beside the published numbers.
# usage: bash scripts/08_step_eval.sh --path <repo root> --gpu 0 [--prm runs/reweighting/prm] [--name dreamprm]
#        [--data data/visualprocessbench.jsonl] [--threshold 0.5] [--resume]
#        bash scripts/08_step_eval.sh --path . --prm random --name random      # the random baseline, no model
# First: python dataset/prepare.py --path . --sources visualprocessbench.  All options: python BoN/step_eval.py --help
# On Slurm: --slurm "--shards 8 --partition gpu --time 2:00:00" (BoN/README.md); leave out --gpu.
STAGES=(BoN/step_eval.py)
source "$(dirname "$0")/_common.sh" "$@"
if [[ -n "$SLURM" ]]; then  # a job array of shards plus a merge job that merges and reruns (python -m dreamprm.slurm)
  submit_slurm --stage step_eval -- "${ARGS[@]}"
else
  run_stage "$PY" "$REPO/BoN/step_eval.py" "${ARGS[@]}"
fi
