"""Stage 8: Table 1 beside the paper's numbers (Markdown, LaTeX), the aggregation ablation, figs/bon_scaling.png.

    python BoN/tables.py --path . [--runs runs/bon] [--main dreamprm] [--vanilla vanilla] [--orm orm]
                         [--orm_proxy dreamprm|none]    # ORM row: a trained ORM; proxy: an ablation row
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dreamprm.tables import TablesConfig, write_tables
from dreamprm.cli import parse_args

if __name__ == "__main__":
    write_tables(parse_args(TablesConfig))
