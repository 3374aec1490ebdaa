#!/usr/bin/env bash
# Stage 7: bi-level training of the PRM and the domain weights (DreamPRM). Add --baseline for the vanilla PRM.
# usage: bash scripts/05_reweighting.sh --path <repo root> --gpu 0 [--train F] [--meta F] [--out DIR] [...]
# All options: python reweighting/train.py --help
STAGES=(reweighting/train.py)
source "$(dirname "$0")/_common.sh" "$@"
run_stage "$PY" "$REPO/reweighting/train.py" "${ARGS[@]}"
