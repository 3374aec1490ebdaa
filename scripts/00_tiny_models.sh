#!/usr/bin/env bash
# Write tiny random checkpoints (policy, PRM, judge) to models/tiny for tests and the CPU demo.
# usage: bash scripts/00_tiny_models.sh --path <repo root> [--out DIR] [--force]
STAGES=(dreamprm/miniworld/tiny.py)
source "$(dirname "$0")/_common.sh" "$@"
run_stage "$PY" -m dreamprm.miniworld.tiny "${ARGS[@]}"
