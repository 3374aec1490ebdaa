"""Stage 8: PRM score of every step prefix of every best-of-N candidate (resumable), then selection.

    python BoN/score.py --path . --prm runs/reweighting/prm --name dreamprm      # -> runs/bon/dreamprm/
    python BoN/score.py --path . --prm runs/vanilla/prm --name vanilla           # the Vanilla PRM row
    python BoN/score.py --path . --prm runs/orm/prm --name orm --unit response   # the ORM row: one score per candidate
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dreamprm.bon import ScoreConfig, score_benchmarks
from dreamprm.cli import parse_args

if __name__ == "__main__":
    score_benchmarks(parse_args(ScoreConfig))
