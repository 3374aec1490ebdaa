#!/usr/bin/env bash
# Stage 8: PRM scores of every step of every best-of-N candidate (resumable), then selection and accuracy.
# usage: bash scripts/06_bon.sh --path <repo root> --gpu 0 [--prm runs/reweighting/prm] [--name dreamprm] [--resume] [...]
#        bash scripts/06_bon.sh --path . --gpu 0 --prm runs/vanilla/prm --name vanilla     # the Vanilla PRM row
#        bash scripts/06_bon.sh --path . --gpu 0 --prm runs/orm/prm --name orm --unit response   # the ORM row
# All options: python BoN/score.py --help
# On Slurm: --slurm "--shards 8 --partition gpu --time 2:00:00" (BoN/README.md); leave out --gpu.
STAGES=(BoN/score.py)
source "$(dirname "$0")/_common.sh" "$@"
if [[ -n "$SLURM" ]]; then  # a job array of shards plus a merge job that merges and reruns (python -m dreamprm.slurm)
  submit_slurm --stage bon -- "${ARGS[@]}"
else
  run_stage "$PY" "$REPO/BoN/score.py" "${ARGS[@]}"
fi
