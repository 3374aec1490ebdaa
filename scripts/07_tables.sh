#!/usr/bin/env bash
# Stage 8: Table 1 (this run beside the paper's), the aggregation ablation and figs/bon_scaling.png.
# usage: bash scripts/07_tables.sh --path <repo root> [--runs runs/bon] [--main dreamprm] [--vanilla vanilla]
#        [--orm orm] [--orm_proxy <run>|none]   (ORM row: the trained ORM's run; proxy: a PRM's last step, ablation)
# All options: python BoN/tables.py --help
STAGES=(BoN/tables.py)
source "$(dirname "$0")/_common.sh" "$@"
run_stage "$PY" "$REPO/BoN/tables.py" "${ARGS[@]}"
