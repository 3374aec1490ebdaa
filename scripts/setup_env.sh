#!/usr/bin/env bash
# Create (or reuse) the repo's virtualenv in .venv with the pinned stack. Idempotent: a second run only
# checks a stamp. Sourced by demo.sh and test.sh; run it alone to set up for the stage scripts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DREAMPRM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.dreamprm-stamp"
want="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
  return 0 2>/dev/null || exit 0
fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"' || exit 1
echo "[setup] creating $VENV (pinned stack from requirements.txt; first run takes a few minutes)"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
LOG="$VENV/install.log"
{
  "$VENV/bin/python" -m pip install --upgrade pip &&
  "$VENV/bin/python" -m pip install -r "$ROOT/requirements.txt" &&
  # betty-ml 0.2.1 declares python<3.11 but runs on 3.11; without the pin pip silently picks 0.1.1.
  "$VENV/bin/python" -m pip install --ignore-requires-python betty-ml==0.2.1 &&
  "$VENV/bin/python" -m pip install --no-deps -e "$ROOT"
} >"$LOG" 2>&1 || { tail -n 30 "$LOG"; echo "[setup] install failed; full log: $LOG" >&2; exit 1; }
echo "$want" >"$STAMP"
echo "[setup] ready: $VENV"
