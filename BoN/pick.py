"""Stage 8: select among the first N candidates from saved step scores (no scoring); baselines; accuracy.

    python BoN/pick.py --path . --name dreamprm [--n 1,2,4,8] [--aggregation mean_log_odds]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dreamprm.bon import SelectConfig, select_benchmarks
from dreamprm.cli import parse_args

if __name__ == "__main__":
    select_benchmarks(parse_args(SelectConfig))
