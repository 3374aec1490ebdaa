# Sourced by the numbered stage scripts: parses --path ROOT and --gpu IDS (both forwarded to the Python
# stage), sets up the environment, and leaves REPO (this checkout: where the code is), ROOT (--path: where
# the data and outputs are, default REPO), PY (the venv's python) and ARGS (the stage's arguments).
# Usage inside a stage script:   source "$(dirname "$0")/_common.sh" "$@"; "$PY" "$REPO/stage.py" "${ARGS[@]}"
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_ROOT="$REPO"
GPU=""
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --path) DATA_ROOT="$(cd "$2" && pwd)"; shift 2 ;;
    --gpu) GPU="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
source "$REPO/scripts/setup_env.sh"  # sets ROOT to the checkout; --path is restored below
ROOT="$DATA_ROOT"
PY="$VENV/bin/python"
ARGS=(--path "$ROOT" ${GPU:+--gpu "$GPU"} "${ARGS[@]}")
cd "$ROOT"
