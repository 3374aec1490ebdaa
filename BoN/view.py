"""Stage 8: a static HTML page of best-of-N runs: per question the candidates, each step shaded by each PRM's score,
each PRM's pick, and filters for the questions where the PRMs disagree or the pick is wrong (no scoring).

    python BoN/view.py --path . --main dreamprm --vanilla vanilla     # -> runs/bon/viewer/index.html
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dreamprm.cli import parse_args
from dreamprm.viewer import ViewConfig, write_viewer

if __name__ == "__main__":
    write_viewer(parse_args(ViewConfig))
