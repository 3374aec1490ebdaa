#!/usr/bin/env bash
# The main job on the CPU: set up the environment if missing, build tiny models, and run the stages that
# exist end to end on a handful of records. Idempotent; works from any directory; about a minute once set up.
#
# Until the CPU mini world with its simulated policy exists (issue 6), the stages run on two small inputs:
#  - rollouts: the tiny random InternVL policy answers 4 drawn counting questions (its text is noise, so no
#    response has steps; the stage's plumbing, judging and summary are what is shown);
#  - bi-level loop: the tiny random Qwen2-VL PRM trains on a synthetic problem whose "noisy" domain has its
#    labels flipped by construction (dreamprm/synthetic.py); its weight should end below 1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="$VENV/bin/python"
OUT="${DEMO_OUT:-runs/demo}"
rm -rf "$OUT/rollouts" "$OUT/reweighting" "$OUT/figs"
mkdir -p "$OUT"

echo "== 1/3 tiny models (random weights, built offline)"
"$PY" -m dreamprm.tiny --path "$ROOT" --out "$OUT/models"

echo "== 2/3 rollouts: tiny policy on 4 drawn counting questions"
"$PY" -c "from pathlib import Path; from dreamprm.synthetic import write_counting_questions as w; w(Path('$OUT'))"
"$PY" inference/mmpr.py --path "$ROOT" --questions "$OUT/counting.jsonl" --out "$OUT/rollouts/counting.jsonl" \
  --policy "$OUT/models/policy" --judge "$OUT/models/judge" --n 2 --max_new_tokens 24 --batch_size 4 --gpu cpu

echo "== 3/3 bi-level loop: tiny PRM, synthetic domains (one with flipped labels)"
"$PY" -c "from pathlib import Path; from dreamprm.synthetic import write_reweighting_problem as w; w(Path('$OUT'))"
"$PY" reweighting/train.py --path "$ROOT" --train "$OUT/train.jsonl" --meta "$OUT/meta.jsonl" \
  --prm "$OUT/models/prm" --out "$OUT/reweighting" --figs "$OUT/figs" --gpu cpu --precision fp32 \
  --iterations 60 --train_batch_size 4 --meta_batch_size 2 --lr 2e-3 --meta_lr 0.05 --log_every 10 --save_every 30
echo "== demo finished: outputs in $OUT (figures in $OUT/figs)"
