#!/usr/bin/env bash
# The whole method end to end on the CPU mini world (issue 6), through the same stage scripts a GPU user runs:
#   world -> rollouts -> tree -> MC labels -> train data -> meta rollouts + meta data
#   -> bi-level training (DreamPRM) and the vanilla PRM (--baseline, same data and schedule), and the ORM baseline
#   -> best-of-8 on the test benchmarks bench_a, bench_b, and step-level evaluation on the step benchmark
#   -> tables, figures and a results page (RESULTS.md) with paired bootstrap intervals.
# The policy is SIMULATED (dreamprm/miniworld/simulated.py, not a model); the PRM is a tiny Qwen2-VL trained from scratch.
#
#   bash scripts/demo.sh                          # outputs in runs/demo (about 5-8 minutes on 2 CPU cores)
#   DEMO_OUT=runs/demo-s1 DEMO_SEED=1 bash scripts/demo.sh
#
# Idempotent: the output directory starts fresh on every run, except the tiny models (<out>/models), which are
# reused. Sizes and the training budget can be overridden through DEMO_* variables (the slow test runs a
# small version); the defaults are the design benchmarks/world_claims.py measures (258-424 s on 2 busy cores, with
# the ORM, at 60 questions per benchmark; 463 s wall and 850 CPU-seconds with issue 13's test sets, other jobs running).
#
# Training design, and why (see RESULTS.md's diagnostics): the PRM starts from random weights, so for its first
# few hundred steps it can only learn the label level and the step position; a hypergradient taken then
# reflects calibration (which domain's mean label pulls the PRM towards the meta set's base rate), not label
# quality. So both trainings start from one shared warm-up of the lower level alone (DEMO_WARMUP iterations,
# every weight 1), then DreamPRM (bi-level) and the vanilla PRM (--baseline) run the same DEMO_ITERATIONS with
# the same data order in parallel, one core each. The stepwise input format scores every step of a response in
# one pass, five labels per sequence instead of one. lr 1e-3: at 3e-3 the tiny PRM sat on a constant-output
# plateau in most seeds (every score ~0.5); at 1e-3 and 3e-4 it learned the error cue within 300-400 iterations
# in every seed tried. 200 questions per domain: with 60 the PRM saw each response ~20 times and memorised it.
#
# The ORM baseline (Table 1's ORM row): the same tiny Qwen2-VL and head from scratch, trained on whole-response
# correctness of the same train rollouts (MC/orm_data.py; reweighting/train.py --baseline --input_format paper:
# one sequence per response, every weight 1), with the budget of each PRM (DEMO_WARMUP + DEMO_ITERATIONS
# iterations, batch DEMO_TRAIN_BATCH). It runs in the background under `nice` from the meta set on, so it takes
# the core the MC stage and the warm-up leave idle and what the other trainings leave; best-of-N scores each whole candidate once
# (BoN/score.py --unit response). DEMO_ORM_ITERATIONS=0 leaves it out (Table 1's ORM row then stays empty).
#
# Test sets (issue 13), sized so that the paired bootstrap interval of DreamPRM - vanilla says something: with 60
# questions per benchmark one question was 1.7 points and the pooled BoN interval +-5 points wide (seed 0); with
# 200 it is +-2.5 pooled, +-3.5 per benchmark, and the step macro-F1 interval on 400 solutions about +-2.2.
# Scoring is cheap next to training (measured on this machine, one core: ~60 ms per best-of-8 question, ~23 ms
# per step-set solution, ~10 s to start each scoring process); the whole demo is CPU-bound on its two cores, so
# the sizes are what fits the ~8 minutes beside the three trainings. The step benchmark (stepbench, held out like
# the test benchmarks) gets one SIMULATED response per question, every step labelled by the world
# (`python -m dreamprm.miniworld.world steps`), the world's VisualProcessBench: BoN/step_eval.py scores it for DreamPRM,
# the vanilla PRM and the seeded random scorer. The held-out rollouts need only the world and the policy, so
# they run in the background from the start, on the core the data stages leave idle; the ORM's inputs are made
# before the MC labels, so that it starts training earlier.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_demo.sh"
OUT="${DEMO_OUT:-runs/demo}"
SEED="${DEMO_SEED:-0}"
N_TRAIN="${DEMO_N_TRAIN:-200}"       # questions per train domain (6 domains)
N_META="${DEMO_N_META:-60}"          # meta questions (4 responses each)
N_TEST="${DEMO_N_TEST:-200}"         # questions per test benchmark (8 candidates each)
N_STEP="${DEMO_N_STEP:-400}"         # questions of the step benchmark (one labelled response each)
ITERS="${DEMO_ITERATIONS:-700}"      # iterations of each training after the warm-up (bi-level and vanilla)
TRAIN_BS="${DEMO_TRAIN_BATCH:-8}"
META_BS="${DEMO_META_BATCH:-4}"
LR="${DEMO_LR:-1e-3}"
META_LR="${DEMO_META_LR:-0.02}"
FORMAT="${DEMO_FORMAT:-stepwise}"  # one pass per response, a score at every step end
WARMUP="${DEMO_WARMUP:-300}"      # lower-level-only iterations first, shared by both trainings (0: none)
ORM_ITERS="${DEMO_ORM_ITERATIONS:-$(( WARMUP + ITERS ))}"  # the ORM's iterations: each PRM's whole budget (0: no ORM)

fresh_output "$OUT"
W="$OUT/world" R="$OUT/rollouts" MCD="$OUT/mc" FIGS="$OUT/figs"
BASE=(--path "$ROOT" --seed "$SEED")
SIM=(--backend simulated --policy "$W/policy.json" --judge none)
TRAIN=(--gpu cpu --precision fp32 --input_format "$FORMAT" --iterations "$ITERS" --train_batch_size "$TRAIN_BS"
       --meta_batch_size "$META_BS" --lr "$LR" --lr_step 1000000 --meta_lr "$META_LR" --log_every 10
       --save_every "$ITERS" --keep_checkpoints 1)
t0=$SECONDS
stamp() { echo "   [$(( SECONDS - t0 )) s]"; }
# A failed demo leaves nothing running behind it: the background jobs (and the held-out subshell's current child).
orm="" heldout="" prms=""
trap 'for p in $orm $heldout $prms; do pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done; true' EXIT

echo "== 1 tiny models (random weights, built offline; reused if present and built by the same code)"
tiny_models "$OUT"

echo "== 2 the CPU mini world (seed $SEED) and its SIMULATED policy"
"$PY" -m dreamprm.miniworld.world "${BASE[@]}" --out "$W" --n_train "$N_TRAIN" --n_meta "$N_META" --n_test "$N_TEST" \
  --n_step "$N_STEP"
stamp

echo "== 2t held-out rollouts in the background ($OUT/heldout.log), on the core the next stages leave idle: 8"
echo "     candidates per test question, one response per step-benchmark question and its step labels ($W/steps/)"
(
  for b in bench_a bench_b; do
    "$PY" inference/world.py "${BASE[@]}" "${SIM[@]}" --dataset "$b" --questions "$W/data/$b.jsonl" \
      --out "$R/$b.jsonl" --n 8
  done
  "$PY" inference/world.py "${BASE[@]}" "${SIM[@]}" --dataset stepbench --questions "$W/data/stepbench.jsonl" \
    --out "$R/stepbench.jsonl" --n 1
  "$PY" -m dreamprm.miniworld.world steps "${BASE[@]}" --policy "$W/policy.json" --responses "$R/stepbench.jsonl" \
    --out "$W/steps/stepbench.jsonl"
) > "$OUT/heldout.log" 2>&1 &
heldout=$!

echo "== 3 rollouts: one response per train question"
"$PY" inference/world.py "${BASE[@]}" "${SIM[@]}" --dataset train --questions "$W/data/train.jsonl" \
  --out "$R/train.jsonl" --n 1
# The ORM's inputs first (its train data and the meta set), so that it trains while the MC labels are estimated.
echo "== 4o ORM train data: one record per train response, labelled by its correctness"
"$PY" MC/orm_data.py "${BASE[@]}" --responses "$R/train.jsonl" --out "$MCD/orm_train.jsonl"
echo "== 5 meta rollouts (4 per meta question) and the meta set"
"$PY" inference/world.py "${BASE[@]}" "${SIM[@]}" --dataset meta --questions "$W/data/meta.jsonl" \
  --out "$R/meta.jsonl" --n 4
"$PY" inference/meta_data.py "${BASE[@]}" --responses "$R/meta.jsonl" --out "$OUT/meta/meta.jsonl"
if (( ORM_ITERS > 0 )); then
  echo "== 6o the ORM baseline, in the background under nice ($ORM_ITERS iterations from the random tiny PRM): $OUT/orm.log"
  nice -n 10 "$PY" reweighting/train.py "${BASE[@]}" "${TRAIN[@]}" --input_format paper --iterations "$ORM_ITERS" \
    --save_every "$ORM_ITERS" --train "$MCD/orm_train.jsonl" --meta "$OUT/meta/meta.jsonl" --prm "$OUT/models/prm" \
    --out "$OUT/orm" --figs "$OUT/orm/figs" --baseline > "$OUT/orm.log" 2>&1 &
  orm=$!
fi
echo "== 4 tree, MC labels (SIMULATED completions), train data"
"$PY" MC/tree.py "${BASE[@]}" --responses "$R/train.jsonl" --out "$MCD/tree.jsonl"
"$PY" MC/estimate.py "${BASE[@]}" "${SIM[@]}" --tree "$MCD/tree.jsonl" --out "$MCD/estimate.jsonl"
"$PY" MC/train_data.py "${BASE[@]}" --nodes "$MCD/estimate.jsonl" --out "$MCD/train.jsonl"
stamp

PRM0="$OUT/models/prm"
if (( WARMUP > 0 )); then
  echo "== 6a warm-up: the lower level alone ($WARMUP iterations, every weight 1) before the domain weights move"
  "$PY" reweighting/train.py "${BASE[@]}" "${TRAIN[@]}" --iterations "$WARMUP" --save_every "$WARMUP" \
    --train "$MCD/train.jsonl" --meta "$OUT/meta/meta.jsonl" --prm "$PRM0" --out "$OUT/warmup" --figs "$OUT/warmup/figs" \
    --baseline
  PRM0="$OUT/warmup/prm"
  stamp
fi
echo "== 6 from the same start, in parallel (one core each): bi-level training of the PRM and the domain weights"
echo "     (DreamPRM) and the vanilla PRM (--baseline: the same data and schedule, every weight fixed at 1)"
"$PY" reweighting/train.py "${BASE[@]}" "${TRAIN[@]}" --train "$MCD/train.jsonl" --meta "$OUT/meta/meta.jsonl" \
  --prm "$PRM0" --out "$OUT/reweighting" --figs "$FIGS" > "$OUT/reweighting.log" 2>&1 &
dream=$!
"$PY" reweighting/train.py "${BASE[@]}" "${TRAIN[@]}" --train "$MCD/train.jsonl" --meta "$OUT/meta/meta.jsonl" \
  --prm "$PRM0" --out "$OUT/vanilla" --figs "$FIGS" --baseline > "$OUT/vanilla.log" 2>&1 &
vanilla=$!
status=0
wait "$dream" || status=$?
wait "$vanilla" || status=$?
tail -n 2 "$OUT/reweighting.log" "$OUT/vanilla.log" | grep -v "it/s"
if (( status )); then echo "training failed: see $OUT/reweighting.log and $OUT/vanilla.log" >&2; exit "$status"; fi
stamp

echo "== 8 best-of-8 on the test benchmarks and step-level scores on the step benchmark: DreamPRM, then the vanilla"
echo "     PRM, in the background ($OUT/eval.log); the ORM's training ends and its candidates are scored meanwhile"
if ! wait "$heldout"; then echo "held-out rollouts failed: see $OUT/heldout.log" >&2; exit 1; fi
heldout=""
grep -E "^wrote|fully correct" "$OUT/heldout.log" || true
BON=(--benchmarks bench_a,bench_b --candidates "$R/{benchmark}.jsonl" --questions "$W/data/{benchmark}.jsonl")
STEPS=(--data "$W/steps/stepbench.jsonl" --gpu cpu --precision fp32)
evaluate() {  # <name> <prm>: best-of-8 scores and selection, then the step set's scores and metrics
  "$PY" BoN/score.py "${BASE[@]}" "${BON[@]}" --gpu cpu --precision fp32 --input_format "$FORMAT" --prm "$2" \
    --name "$1" --out "$OUT/bon/$1" &&  # && : set -e does not apply inside a function called in an && list
  "$PY" BoN/step_eval.py "${BASE[@]}" "${STEPS[@]}" --prm "$2" --name "$1" --out "$OUT/stepeval/$1"
}
# One after the other on one core: the ORM (under nice) keeps the other core. Scoring both PRMs in parallel
# starved it, and its training, scoring and selection are the longest chain left (measured: ~25 s slower).
(evaluate dreamprm "$OUT/reweighting/prm" && evaluate vanilla "$OUT/vanilla/prm") > "$OUT/eval.log" 2>&1 &
prms=$!
if [[ -n "$orm" ]]; then
  if ! wait "$orm"; then echo "ORM training failed: see $OUT/orm.log" >&2; exit 1; fi
  orm=""
  tail -n 2 "$OUT/orm.log" | grep -v "it/s" || true
  "$PY" BoN/score.py "${BASE[@]}" "${BON[@]}" --gpu cpu --precision fp32 --input_format paper --unit response \
    --prm "$OUT/orm/prm" --name orm --out "$OUT/bon/orm" > "$OUT/eval_orm.log" 2>&1 \
    || { echo "ORM scoring failed: see $OUT/eval_orm.log" >&2; exit 1; }
  grep -E "^bench_[ab] \(N" "$OUT/eval_orm.log" | sed "s/^/  orm: /" || true
fi
"$PY" BoN/step_eval.py "${BASE[@]}" "${STEPS[@]}" --prm random --name random --out "$OUT/stepeval/random" \
  > "$OUT/eval_random.log" 2>&1 || { echo "random step scoring failed: see $OUT/eval_random.log" >&2; exit 1; }
if ! wait "$prms"; then echo "PRM scoring failed: see $OUT/eval.log" >&2; exit 1; fi
prms=""
grep -E "^(bench_[ab] \(N|stepbench +[0-9]|held-out threshold)" "$OUT/eval.log" || true
grep -E "^stepbench +[0-9]" "$OUT/eval_random.log" | sed "s/^/  random: /" || true
RUNS=(dreamprm vanilla)
[[ -d "$OUT/bon/orm" ]] && RUNS+=(orm)
for name in "${RUNS[@]}"; do  # selection again from the saved scores (score.py already did it once)
  "$PY" BoN/pick.py "${BASE[@]}" "${BON[@]}" --name "$name" --out "$OUT/bon/$name" --resume  # --resume: rewrite its picks
done
for pair in dreamprm:reweighting vanilla:vanilla; do  # each trained PRM's model card gains what was measured
  "$PY" -m dreamprm.card --path "$ROOT" --prm "$OUT/${pair#*:}/prm" --bon "$OUT/bon/${pair%%:*}/results.json" \
    --step_eval "$OUT/stepeval/${pair%%:*}/stepbench.metrics.json"
done
stamp

echo "== 9 tables, figures and the results page"
"$PY" BoN/tables.py "${BASE[@]}" --runs "$OUT/bon" --figs "$FIGS"
# One static page: per question both PRMs' step scores and picks on the candidates the demo scored.
"$PY" BoN/view.py "${BASE[@]}" --runs "$OUT/bon" --main dreamprm --vanilla vanilla --benchmarks bench_a,bench_b \
  --candidates "$R/{benchmark}.jsonl" --out "$OUT/bon/viewer"
echo "   BoN viewer: $OUT/bon/viewer/index.html (filters: index.html#filter=disagree,wrong)"
"$PY" -m dreamprm.miniworld.report --path "$ROOT" --run "$OUT"
stamp
echo "== demo finished in $(( SECONDS - t0 )) s: $OUT/RESULTS.md (figures in $FIGS)"
