# Sourced by the numbered stage scripts. A script declares the Python stages it runs, then sources this file:
#
#   STAGES=(MC/tree.py MC/estimate.py)            # paths in this checkout; dreamprm/x.py runs as `-m dreamprm.x`
#   source "$(dirname "$0")/_common.sh" "$@"
#   route                                          # optional: ARGS_tree, ARGS_estimate = each stage's options
#   run_stage "$PY" "$REPO/MC/tree.py" "${ARGS_tree[@]}"
#
# It parses --path ROOT and --gpu IDS (both forwarded to every stage), sets up the environment and leaves REPO
# (this checkout: where the code is), ROOT (--path: where the data and outputs are, default REPO), PY (the
# venv's python) and ARGS (--path ROOT [--gpu IDS] and the other arguments). Two options are the launcher's own:
#   --help, -h   print the script's usage (its header comment) and the --help of every stage in STAGES, run nothing
#   --dry_run    print each stage's command line instead of running it
#   --slurm OPTS (02, 03, 06, 08) submit the generation stage as a Slurm job array instead: OPTS are python -m dreamprm.slurm's
#                own options in one word, e.g. --slurm "--shards 16 --partition gpu --time 12:00:00"
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${STAGES+x}" ]]; then
  echo "error: $0 does not declare STAGES before sourcing _common.sh" >&2
  exit 2
fi
HELP=0
DRY_RUN=0
SLURM=""
for a in "$@"; do
  [[ "$a" == "--help" || "$a" == "-h" ]] && HELP=1
done
DATA_ROOT="$REPO"
GPU=""
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --help|-h) shift ;;
    --dry_run) DRY_RUN=1; shift ;;
    --slurm)
      if [[ $# -lt 2 ]]; then echo "error: --slurm needs a value (python -m dreamprm.slurm's options)" >&2; exit 2; fi
      SLURM="$2"; shift 2 ;;
    --path|--gpu)
      if [[ $# -lt 2 || "$2" == --* ]]; then echo "error: $1 needs a value" >&2; exit 2; fi
      set -- "$1=$2" "${@:3}" ;;
    --path=*)
      p="${1#--path=}"
      if (( ! HELP )); then
        [[ -d "$p" ]] || { echo "error: --path $p: no such directory" >&2; exit 2; }
        DATA_ROOT="$(cd "$p" && pwd)"
      fi
      shift ;;
    --gpu=*) GPU="${1#--gpu=}"; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
source "$REPO/scripts/setup_env.sh"  # sets ROOT to the checkout; --path is restored below
ROOT="$DATA_ROOT"
PY="$VENV/bin/python"
ARGS=(--path "$ROOT" ${GPU:+--gpu "$GPU"} "${ARGS[@]}")

stage_help() {
  if [[ "$1" == dreamprm/*.py ]]; then  # a module of the package runs with -m (its relative imports need it)
    local m="${1%.py}"
    "$PY" -m "${m//\//.}" --help
  else
    "$PY" "$REPO/$1" --help
  fi
}

if (( HELP )); then
  # The usage is the script's header comment (after the #! line, up to the first line that is not a comment).
  sed -n '2,${/^#/!q;s/^# \{0,1\}//;p}' "$0"
  echo "Launcher options: --help (this text), --dry_run (print the stage commands, run nothing)."
  # Each stage's --help imports torch (seconds): all at once, printed in order.
  help_dir="$(mktemp -d)"
  trap 'rm -rf "$help_dir"' EXIT
  pids=()
  for k in "${!STAGES[@]}"; do
    stage_help "${STAGES[$k]}" >"$help_dir/$k" 2>&1 &
    pids+=($!)
  done
  status=0
  for k in "${!STAGES[@]}"; do
    wait "${pids[$k]}" || status=1
    echo
    echo "== options of ${STAGES[$k]}"
    cat "$help_dir/$k"
  done
  exit "$status"
fi

# `route [STAGE...]` (default: STAGES): each stage's options, ARGS_<stage file stem>, and POSITIONAL (the bare
# words the script allows, e.g. 02's dataset). An option goes to every stage that accepts it; one that none
# accepts is an error naming it (scripts/route.py).
route() {
  local routes stages=("$@")
  (( ${#stages[@]} )) || stages=("${STAGES[@]}")
  routes="$("$PY" "$REPO/scripts/route.py" "$(basename "$0")" "${stages[@]}" -- "${ARGS[@]}")" || exit 2
  eval "$routes"
}

# `submit_slurm STAGE_OPTIONS... -- ARGS...`: the generation stage as a job array (dreamprm/slurm.py), with
# --dry_run passed on (it prints the batch scripts).
submit_slurm() {
  local own=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do own+=("$1"); shift; done
  shift
  # shellcheck disable=SC2206  # OPTS is one word of launcher options, split on purpose
  own+=($SLURM)
  (( DRY_RUN )) && own+=(--dry_run)
  "$PY" -m dreamprm.slurm --path "$ROOT" "${own[@]}" -- "$@"
}

run_stage() {
  if (( DRY_RUN )); then
    printf '%q ' "$@" | sed 's/ $//'
    echo
  else
    "$@"
  fi
}
cd "$ROOT"
