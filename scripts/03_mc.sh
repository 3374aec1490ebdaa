#!/usr/bin/env bash
# Stages 3-5: step-prefix tree -> Monte Carlo labels -> train data, from runs/rollouts/mmpr.jsonl.
#   bash scripts/03_mc.sh --path . --gpu 0 [options of MC/tree.py, MC/estimate.py, MC/train_data.py]
# Each option goes to every stage that has it: --seed, --max_skip_fraction, --max_image_pixels, --debug to all
# three; --responses to the tree; --policy, --backend, --max_rollouts, --shard, --limit ... to the estimation;
# --per_domain to the train data. --tree FILE and --nodes FILE name the files between the stages (the tree; the
# labelled nodes). --out is refused: each stage writes its own file. An option no stage has is an error.
# The tree and the train data are cheap and deterministic and are rebuilt on every call (they get --resume);
# --resume continues an interrupted estimation. With --shard i/n only the tree and this shard's estimation run
# (the shards' tree builds take turns); when every shard has finished,
#   python -m dreamprm.shards --path . --out runs/mc/estimate.jsonl && python MC/train_data.py --path . --resume
# On Slurm: --slurm "--shards 16 --partition gpu --time 12:00:00" builds the tree here, then submits the estimation
# as a job array and a merge job that builds the train data (python -m dreamprm.slurm; MC/README.md). Leave out
# --gpu: Slurm gives each task its GPUs.
STAGES=(MC/tree.py MC/estimate.py MC/train_data.py)
source "$(dirname "$0")/_common.sh" "$@"
route  # ARGS_tree, ARGS_estimate, ARGS_train_data
# Shards started together would all rebuild the tree: one at a time (flock), since its writer refuses a second.
TURNS=()
if command -v flock >/dev/null && (( ! DRY_RUN )); then
  mkdir -p "$ROOT/runs/mc"
  TURNS=(flock "$ROOT/runs/mc/.03_mc.tree-build.lock")
fi
echo "== stage 3: tree"
run_stage "${TURNS[@]}" "$PY" "$REPO/MC/tree.py" "${ARGS_tree[@]}" --resume
if [[ -n "$SLURM" ]]; then
  echo "== stage 4 on Slurm: MC estimation as a job array; its merge job then runs MC/train_data.py"
  submit_slurm --stage mc -- "${ARGS_estimate[@]}"
  exit 0
fi
echo "== stage 4: MC estimation"
run_stage "$PY" "$REPO/MC/estimate.py" "${ARGS_estimate[@]}"
if [[ " ${ARGS_estimate[*]} " == *" --shard "* || " ${ARGS_estimate[*]} " == *" --shard="* ]]; then
  echo "== sharded run: merge the shards when all have finished, then run MC/train_data.py (see MC/README.md)"
  exit 0
fi
echo "== stage 5: train data"
run_stage "$PY" "$REPO/MC/train_data.py" "${ARGS_train_data[@]}" --resume
