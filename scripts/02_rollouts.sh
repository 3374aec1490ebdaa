#!/usr/bin/env bash
# Stage 2: policy rollouts for one dataset (inference/<dataset>.py), e.g.
#   bash scripts/02_rollouts.sh --path . --gpu 0 mathvista [--shard 0/4] [--resume] [--backend vllm] ...
# DATASET (anywhere among the options) is a script name in inference/ (mmpr mathvista wemath mathvision mmvet
# mmstar mmmu_pro mmmu world) or one MMPR domain (e.g. chartqa: runs inference/mmpr.py --domains chartqa, writing
# runs/rollouts/mmpr-chartqa.jsonl). Every other option goes to the script: `bash scripts/02_rollouts.sh DATASET
# --help` lists them. On Slurm: --slurm "--shards 8 --partition gpu --time 4:00:00" submits the dataset's rollouts
# as a job array plus a merge job instead (python -m dreamprm.slurm; inference/README.md). Leave out --gpu.
STAGES=(inference/mmpr.py)  # for --help: the named dataset's script, else mmpr.py (the options all scripts share)
for a in "$@"; do
  if [[ "$a" =~ ^[A-Za-z0-9_]+$ && "$a" != meta_data && -f "$(dirname "$0")/../inference/$a.py" ]]; then
    STAGES=("inference/$a.py")
    break
  fi
done
source "$(dirname "$0")/_common.sh" "$@"
route inference/mmpr.py  # ARGS_mmpr and POSITIONAL=(DATASET); mmpr.py's options are every script's, and --domains
NAME="${POSITIONAL[0]:-}"
datasets="$(cd "$REPO/inference" && ls ./*.py | sed 's|^\./||; s/\.py$//' | grep -vx meta_data | tr '\n' ' ')"
if [[ -z "$NAME" ]]; then
  echo "error: no DATASET; usage: bash scripts/02_rollouts.sh --path ROOT --gpu IDS DATASET [options]" >&2
  echo "DATASET: ${datasets}or an MMPR domain" >&2
  exit 2
fi
if [[ ! "$NAME" =~ ^[A-Za-z0-9_-]+$ || "$NAME" == meta_data ]]; then
  echo "error: DATASET $NAME: not a dataset (${datasets}or an MMPR domain)" >&2
  exit 2
fi
if [[ -n "$SLURM" ]]; then  # a job array (one task per shard) plus its merge job: python -m dreamprm.slurm
  if [[ -f "$REPO/inference/$NAME.py" ]]; then
    submit_slurm --stage rollouts --dataset "$NAME" -- "${ARGS_mmpr[@]}"
  else
    submit_slurm --stage rollouts --dataset mmpr -- --domains "$NAME" --out "runs/rollouts/mmpr-$NAME.jsonl" "${ARGS_mmpr[@]}"
  fi
elif [[ -f "$REPO/inference/$NAME.py" ]]; then
  run_stage "$PY" "$REPO/inference/$NAME.py" "${ARGS_mmpr[@]}"
else  # an MMPR domain: inference/mmpr.py rejects a name that is none, listing the domains
  run_stage "$PY" "$REPO/inference/mmpr.py" --domains "$NAME" --out "runs/rollouts/mmpr-$NAME.jsonl" "${ARGS_mmpr[@]}"
fi
