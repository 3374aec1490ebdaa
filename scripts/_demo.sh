# Shared by the CPU demos (scripts/demo.sh, scripts/demo_granularity.sh); sourced with ROOT set to the repo root.
# The environment (pinned .venv, no GPU, no hub, one thread per process), a fresh output directory that keeps its
# tiny models, and the tiny models themselves.
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# One thread per process: on a 2-core machine oversubscribed threads cost far more than they bring.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
PY="$VENV/bin/python"

fresh_output() {  # <out>: emptied, except the tiny models in <out>/models
  if [[ -d "$1" ]]; then
    find "$1" -mindepth 1 -maxdepth 1 ! -name models -exec rm -rf {} +
  fi
  mkdir -p "$1"
}

tiny_models() {  # <out>: random tiny checkpoints in <out>/models, rebuilt when the code that makes them changed
  # The tiny tokenizer learns the world's wording (dreamprm/miniworld/tiny.py): rebuild when either file changed.
  local stamp force=()
  stamp="$(cat dreamprm/miniworld/tiny.py dreamprm/miniworld/world.py | sha256sum | cut -d' ' -f1)"
  [[ "$(cat "$1/models/.stamp" 2>/dev/null)" == "$stamp" ]] || force=(--force)
  "$PY" -m dreamprm.miniworld.tiny --path "$ROOT" --out "$1/models" "${force[@]}"
  echo "$stamp" > "$1/models/.stamp"
}
