#!/usr/bin/env bash
# Stage 6: the meta set from the rollouts of the meta source. Default: MMMU-Pro, the source of the paper's code
# (first `bash scripts/02_rollouts.sh --path . --gpu 0 mmmu_pro`, which reads data/mmmu_pro.jsonl):
#   bash scripts/04_meta_data.sh --path . [--out runs/meta/meta.jsonl] [--resume]
# MMMU validation instead (first `bash scripts/02_rollouts.sh --path . --gpu 0 mmmu`):
#   bash scripts/04_meta_data.sh --path . --responses runs/rollouts/mmmu.jsonl
STAGES=(inference/meta_data.py)
source "$(dirname "$0")/_common.sh" "$@"
run_stage "$PY" "$REPO/inference/meta_data.py" "${ARGS[@]}"
