#!/usr/bin/env bash
# Run the test suite on the CPU (creating the environment first if it is missing).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k steps -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" -m pytest "$@"
