#!/usr/bin/env bash
# The main job on the CPU: set up the environment if missing, build tiny models, and run every stage of
# the pipeline that exists end to end on a handful of records. Idempotent; works from any directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${DEMO_OUT:-$ROOT/runs/demo}"
mkdir -p "$OUT"

echo "== tiny models (random weights, offline)"
"$VENV/bin/python" -m dreamprm.tiny --path "$ROOT" --out "$OUT/models"
echo "== demo finished: outputs in $OUT"
