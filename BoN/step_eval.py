"""Step-level evaluation of a PRM on VisualProcessBench (or any step set): macro-F1, first-error, AUROC.

    python dataset/prepare.py --path . --sources visualprocessbench            # -> data/visualprocessbench.jsonl
    python BoN/step_eval.py --path . --prm runs/reweighting/prm --name dreamprm # -> runs/stepeval/dreamprm/
    python BoN/step_eval.py --path . --prm random --name random                 # the seeded random baseline
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
from dreamprm.cli import parse_args
from dreamprm.stepeval import StepEvalConfig, run_step_eval

if __name__ == "__main__":
    run_step_eval(parse_args(StepEvalConfig))
