# Sourced by the numbered stage scripts: parses --path ROOT and --gpu IDS (both also forwarded to the
# Python stage), sets up the environment and exports PY (the venv's python) and ROOT.
# Usage inside a stage script:   source "$(dirname "$0")/_common.sh" "$@"; "$PY" stage.py "${ARGS[@]}"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GPU=""
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --path) ROOT="$(cd "$2" && pwd)"; shift 2 ;;
    --gpu) GPU="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
PY="$VENV/bin/python"
ARGS=(--path "$ROOT" ${GPU:+--gpu "$GPU"} "${ARGS[@]}")
cd "$ROOT"
