#!/usr/bin/env bash
# Stage 6: the meta set from the MMMU rollouts (run `bash scripts/02_rollouts.sh --path . --gpu 0 mmmu` first).
#   bash scripts/04_meta_data.sh --path . [--responses runs/rollouts/mmmu.jsonl] [--out runs/meta/meta.jsonl] [--resume]
source "$(dirname "$0")/_common.sh" "$@"
"$PY" "$REPO/inference/meta_data.py" "${ARGS[@]}"
