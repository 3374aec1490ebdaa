#!/usr/bin/env bash
# A variant of the CPU demo (scripts/demo.sh): the three reweighting granularities on the same data, side by side.
#   world -> train rollouts -> tree -> MC labels -> train data (with instance ids) -> meta set
#   -> warm-ups without the upper level (the 1.5 cold start): the demo's scalar PRM and the generative PRM
#   -> from them, four bi-level runs: scalar --reweight domain (DreamPRM) and instance_table, generative
#      instance_net (it reads the PRM's + / - logits, so it needs that kind) and, beside it, generative
#      instance_table
#   -> GRANULARITY.md: each run's per-domain weight (learned, or the mean of its instances') against the domains'
#      known quality (Spearman), and how well the instance weights tell the questions whose ground truth the world
#      corrupted from the clean ones (AUROC, bootstrap interval over instances).
# The policy is SIMULATED (dreamprm/miniworld/simulated.py); the PRMs are the tiny Qwen2-VL. No best-of-N here: the demo
# does that.
#
#   bash scripts/demo_granularity.sh               # outputs in runs/granularity (about 12 minutes on 2 CPU cores)
#
# Why these settings: an instance weight moves only when its instance is in the lower batch the hypergradient
# is taken on, so the upper level steps after every lower step (--unroll_steps 1) and the train set is smaller
# than the demo's (60 questions per domain: each response is in ~9 lower batches); the table starts at 1 and is
# clipped to [-1, 3] (the 1.5 run_table setting); the net ends in a sigmoid, 10 hidden units (run_net).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_demo.sh"
OUT="${DEMO_OUT:-runs/granularity}"
SEED="${DEMO_SEED:-0}"
N_TRAIN="${DEMO_N_TRAIN:-60}"        # questions per train domain (6 domains)
N_META="${DEMO_N_META:-40}"          # meta questions (4 responses each)
WARMUP="${DEMO_WARMUP:-300}"         # shared lower-level-only iterations
ITERS="${DEMO_ITERATIONS:-400}"      # iterations of each bi-level run
TRAIN_BS="${DEMO_TRAIN_BATCH:-8}"
META_BS="${DEMO_META_BATCH:-4}"
LR="${DEMO_LR:-1e-3}"
META_LR="${DEMO_META_LR:-0.02}"

fresh_output "$OUT"
W="$OUT/world" R="$OUT/rollouts" MCD="$OUT/mc"
BASE=(--path "$ROOT" --seed "$SEED")
SIM=(--backend simulated --policy "$W/policy.json" --judge none)
NET_META_LR="${DEMO_NET_META_LR:-1e-3}"
TRAIN=(--gpu cpu --precision fp32 --train_batch_size "$TRAIN_BS" --meta_batch_size "$META_BS" --lr "$LR"
       --lr_step 1000000 --log_every 10 --keep_checkpoints 1 --train "$MCD/train.jsonl" --meta "$OUT/meta/meta.jsonl")
SCALAR=(--prm_kind scalar --input_format stepwise)
GENERATIVE=(--prm_kind generative)
t0=$SECONDS
stamp() { echo "   [$(( SECONDS - t0 )) s]"; }
runs=""
trap 'for p in $runs; do kill "$p" 2>/dev/null; done; true' EXIT

echo "== 1 tiny models and the CPU mini world (seed $SEED)"
tiny_models "$OUT"
"$PY" -m dreamprm.miniworld.world "${BASE[@]}" --out "$W" --n_train "$N_TRAIN" --n_meta "$N_META" --n_test 1 --n_step 1
echo "== 2 rollouts, tree, MC labels (SIMULATED completions), train data with instance ids, meta set"
"$PY" inference/world.py "${BASE[@]}" "${SIM[@]}" --dataset train --questions "$W/data/train.jsonl" \
  --out "$R/train.jsonl" --n 1
"$PY" MC/tree.py "${BASE[@]}" --responses "$R/train.jsonl" --out "$MCD/tree.jsonl"
"$PY" MC/estimate.py "${BASE[@]}" "${SIM[@]}" --tree "$MCD/tree.jsonl" --out "$MCD/estimate.jsonl"
"$PY" MC/train_data.py "${BASE[@]}" --nodes "$MCD/estimate.jsonl" --out "$MCD/train.jsonl"
"$PY" inference/world.py "${BASE[@]}" "${SIM[@]}" --dataset meta --questions "$W/data/meta.jsonl" \
  --out "$R/meta.jsonl" --n 4
"$PY" inference/meta_data.py "${BASE[@]}" --responses "$R/meta.jsonl" --out "$OUT/meta/meta.jsonl"
stamp

launch() {  # <name> <options...>: one training in the background, its output in <out>/<name>.log
  local name=$1; shift
  "$PY" reweighting/train.py "${BASE[@]}" "${TRAIN[@]}" --out "$OUT/$name" --figs "$OUT/$name/figs" "$@" \
    > "$OUT/$name.log" 2>&1 &
  runs="$runs $!"
}
finish() {  # wait for the launched trainings
  for p in $runs; do wait "$p" || { echo "a training failed: see $OUT/*.log" >&2; exit 1; }; done
  runs=""
}
echo "== 3 warm-ups without the upper level ($WARMUP iterations, every weight 1), scalar and generative in parallel"
launch warmup_scalar "${SCALAR[@]}" --prm "$OUT/models/prm" --iterations "$WARMUP" --save_every "$WARMUP" --baseline
launch warmup_generative "${GENERATIVE[@]}" --prm "$OUT/models/prm" --iterations "$WARMUP" --save_every "$WARMUP" \
  --baseline
finish
stamp

echo "== 4 bi-level runs from the warm PRMs ($ITERS iterations each, two at a time; logs in $OUT/<run>.log)"
BILEVEL=(--iterations "$ITERS" --save_every "$ITERS" --unroll_steps 1)
launch domain "${SCALAR[@]}" "${BILEVEL[@]}" --prm "$OUT/warmup_scalar/prm" --reweight domain --meta_lr "$META_LR"
launch instance_table "${SCALAR[@]}" "${BILEVEL[@]}" --prm "$OUT/warmup_scalar/prm" --reweight instance_table \
  --activation clip --meta_lr "$META_LR"
finish
launch instance_net "${GENERATIVE[@]}" "${BILEVEL[@]}" --prm "$OUT/warmup_generative/prm" --reweight instance_net \
  --activation sigmoid --net_hidden 10 --meta_lr "$NET_META_LR"
launch instance_table_generative "${GENERATIVE[@]}" "${BILEVEL[@]}" --prm "$OUT/warmup_generative/prm" \
  --reweight instance_table --activation clip --meta_lr "$META_LR"
finish
stamp

echo "== 5 the granularities side by side"
"$PY" -m dreamprm.miniworld.granularity --path "$ROOT" --run "$OUT"
stamp
echo "== finished in $(( SECONDS - t0 )) s: $OUT/GRANULARITY.md"
