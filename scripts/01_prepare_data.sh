#!/usr/bin/env bash
# Stage 1: write every source (MMPR domains, MMMU, five benchmarks) as question records + images to data/.
# usage: bash scripts/01_prepare_data.sh --path <repo root> [--sources mmpr mmstar ...] [--local SOURCE=PATH ...]
#        [--n_per_domain 1000] [--out data]        (all options: python dataset/prepare.py --help)
STAGES=(dataset/prepare.py)
source "$(dirname "$0")/_common.sh" "$@"
run_stage "$PY" "$REPO/dataset/prepare.py" "${ARGS[@]}"
