#!/usr/bin/env bash
# Stages 3-5: step-prefix tree -> Monte Carlo labels -> train data, from runs/rollouts/mmpr.jsonl.
#   bash scripts/03_mc.sh --path . --gpu 0 [MC/estimate.py options: --policy --backend --max_rollouts --resume ...]
# The tree and the train data are cheap and deterministic and are rebuilt on every call; options go to the
# estimation. With --shard i/n only the tree and this shard's estimation run: when every shard has finished,
#   python -m dreamprm.shards --path . --out runs/mc/estimate.jsonl && python MC/train_data.py --path . --resume
source "$(dirname "$0")/_common.sh" "$@"
BASE=(--path "$ROOT" ${GPU:+--gpu "$GPU"})
echo "== stage 3: tree"
"$PY" "$REPO/MC/tree.py" "${BASE[@]}" --resume
echo "== stage 4: MC estimation"
"$PY" "$REPO/MC/estimate.py" "${ARGS[@]}"
if [[ " ${ARGS[*]} " == *" --shard "* ]]; then
  echo "== sharded run: merge the shards when all have finished, then run MC/train_data.py (see MC/README.md)"
  exit 0
fi
echo "== stage 5: train data"
"$PY" "$REPO/MC/train_data.py" "${BASE[@]}" --resume
