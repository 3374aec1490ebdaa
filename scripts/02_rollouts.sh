#!/usr/bin/env bash
# Stage 2: policy rollouts for one dataset (inference/<dataset>.py), e.g.
#   bash scripts/02_rollouts.sh --path . --gpu 0 mathvista [--shard 0/4] [--resume] [--backend vllm] ...
# DATASET is a script name in inference/ (mmpr mathvista wemath mathvision mmvet mmstar mmmu_pro mmmu) or one MMPR
# domain (e.g. chartqa: runs inference/mmpr.py --domains chartqa). Other options go to the script (--help).
source "$(dirname "$0")/_common.sh" "$@"
# ARGS = (--path ROOT [--gpu IDS] DATASET options...): take DATASET out.
at=$(( ${#GPU} ? 4 : 2 ))
NAME="${ARGS[$at]:-}"
if [[ -z "$NAME" || "$NAME" == -* ]]; then
  echo "usage: bash scripts/02_rollouts.sh --path ROOT --gpu IDS DATASET [options]" >&2
  echo "DATASET: $(cd "$REPO/inference" && ls *.py | grep -v meta_data | sed 's/\.py$//' | tr '\n' ' ')or an MMPR domain" >&2
  exit 2
fi
ARGS=("${ARGS[@]:0:$at}" "${ARGS[@]:$((at + 1))}")
if [[ -f "$REPO/inference/$NAME.py" && "$NAME" != meta_data ]]; then
  "$PY" "$REPO/inference/$NAME.py" "${ARGS[@]}"
else
  "$PY" "$REPO/inference/mmpr.py" --domains "$NAME" --out "runs/rollouts/mmpr-$NAME.jsonl" "${ARGS[@]}"
fi
