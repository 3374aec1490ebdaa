"""The model card of a trained PRM directory: README.md in the hub's format (YAML metadata + Markdown).

reweighting/train.py writes it with the PRM (from `training.json`, also in the directory: base model, kind,
format, data per domain, learned weights, final losses). Metrics measured later are added by

    python -m dreamprm.card --prm runs/reweighting/prm --bon runs/bon/dreamprm/results.json \
        --step_eval runs/stepeval/dreamprm/visualprocessbench.metrics.json

which keeps them in `card_metrics.json` beside it and rewrites README.md. Only numbers read from those files
appear; a metric nobody measured is absent, never a placeholder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .cli import StageArgs, parse_args
from .io import DataError, atomic_write_text, read_json, write_json

TRAINING_FILE = "training.json"
METRICS_FILE = "card_metrics.json"
CARD_FILE = "README.md"


def _fmt(x, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _skipped(x) -> str:
    if isinstance(x, dict):
        return ", ".join(f"{k}: {v}" for k, v in x.items()) or "none"
    return str(x or "none")


def metadata(training: dict, metrics: dict):
    """The card's YAML header, as the hub reads it (huggingface_hub's ModelCardData, eval results included)."""
    from huggingface_hub import EvalResult, ModelCardData

    evals = []
    for run in metrics.get("bon", {}).values():
        for bench, acc in run["accuracy"].items():
            evals.append(EvalResult(task_type="image-text-to-text", dataset_type=bench, dataset_name=bench,
                                    metric_type="accuracy", metric_value=acc,
                                    metric_name=f"best-of-{run['n']} accuracy (%, {run['aggregation']})"))
    for name, m in metrics.get("step_eval", {}).items():
        if m.get("macro_f1") is not None:
            evals.append(EvalResult(task_type="image-text-to-text", dataset_type=name, dataset_name=name,
                                    metric_type="f1", metric_value=m["macro_f1"], metric_name="step macro-F1 (%)"))
    base = training.get("base_model")
    return ModelCardData(library_name="transformers", pipeline_tag="image-text-to-text",
                         base_model=base if base and "/" in base and not Path(base).exists() else None,
                         tags=["process-reward-model", "dreamprm", f"prm-{training.get('prm_kind', 'scalar')}",
                               "multimodal-reasoning"],
                         model_name=training.get("name", "dreamprm-prm"), eval_results=evals or None)


def body(training: dict, metrics: dict) -> str:
    kind, weighting = training.get("prm_kind", "scalar"), training.get("reweight", "domain")
    how = ("the vanilla baseline: the same data and schedule, every domain weight fixed at 1"
           if training.get("baseline") else f"DreamPRM's bi-level loop with learned {weighting} weights")
    lines = [f"# {training.get('name', 'DreamPRM process reward model')}", "",
             f"A {kind} process reward model on `{training.get('base_model')}`, trained with {how} "
             f"({training.get('iterations')} iterations; input format `{training.get('input_format')}`). "
             "It scores every step of a multimodal chain of thought: one probability per step that the "
             "reasoning is still on a path to the right answer.", "",
             "## Training data", "",
             f"Train samples (MC-labelled step prefixes): {training['train']['samples']} from "
             f"`{training['train']['file']}`; meta records: {training['meta']['records']} from "
             f"`{training['meta']['file']}`. Skipped input records: train {_skipped(training['train']['skipped'])}; "
             f"meta {_skipped(training['meta']['skipped'])}.", "",
             f"| domain | train samples | {'weight (fixed)' if training.get('baseline') else 'learned weight'} |",
             "|---|---|---|"]
    weights = training.get("weights", {})
    for d, n in training["train"]["by_domain"].items():
        lines.append(f"| {d} | {n} | {_fmt(weights.get(d))} |")
    lines += ["", "## Metrics", ""]
    final = training.get("final", {})
    lines.append(f"Training, last logged iteration {final.get('iteration', '—')}: lower (PRM) loss "
                 f"{_fmt(final.get('lower_loss'))}, upper (meta) loss {_fmt(final.get('upper_loss'))}.")
    for name, run in metrics.get("bon", {}).items():
        lines += ["", f"Best-of-{run['n']} accuracy (%), run `{name}`, aggregation `{run['aggregation']}` "
                  f"(from `{run['source']}`):", "", "| benchmark | accuracy |", "|---|---|"]
        lines += [f"| {b} | {_fmt(a)} |" for b, a in run["accuracy"].items()]
    for name, m in metrics.get("step_eval", {}).items():
        lines += ["", f"Step-level evaluation on `{name}` (from `{m['source']}`): macro-F1 {_fmt(m.get('macro_f1'))} % "
                  f"over {m.get('n_solutions')} solutions."]
    if not metrics:
        lines += ["", "No evaluation has been recorded for this PRM yet (`python -m dreamprm.card --prm <dir> "
                  "--bon <results.json>` adds best-of-N results)."]
    lines += ["", "## Load and score", "", "```python", "from dreamprm import PRMScorer", "",
              'prm = PRMScorer.from_pretrained("<this directory or hub id>")',
              'out = prm.score([("image.png", "question", "Step 1: ...\\nStep 2: ...\\nFinal answer: 3")])',
              "out[0].step_scores   # one score per step", "out[0].score()       # mean of log-odds (the paper's)",
              "```", "", "As a reward server (OpenRLHF's remote reward model shape):", "", "```bash",
              "python -m dreamprm.server --prm <this directory> --port 5000   # POST /get_reward, /score_steps",
              "```", "", "Best-of-N over candidate files: `python BoN/score.py --prm <this directory>`.", "",
              "Files: the backbone (`config.json`, weights, processor), " +
              ("`prm_head.pt` (the scalar head), " if kind == "scalar" else "") +
              "`prm_config.json` (kind and input format, read back when scoring), `training.json`.", ""]
    return "\n".join(lines)


def write_card(prm_dir: Path) -> Path:
    """README.md of `prm_dir` from its training.json and card_metrics.json (if any)."""
    from huggingface_hub import ModelCard

    prm_dir = Path(prm_dir)
    training = read_json(prm_dir / TRAINING_FILE, "PRM training record")
    metrics = read_json(prm_dir / METRICS_FILE, "card metrics") if (prm_dir / METRICS_FILE).is_file() else {}
    card = ModelCard(f"---\n{metadata(training, metrics).to_yaml()}\n---\n\n{body(training, metrics)}")
    atomic_write_text(prm_dir / CARD_FILE, str(card))
    return prm_dir / CARD_FILE


def bon_metrics(path: Path) -> tuple[str, dict]:
    """(run name, its accuracy per benchmark at the largest N for the main aggregation) from a results.json."""
    from .tables import read_results

    r = read_results(path)
    n = str(max(r["n"]))
    acc = {b: res["accuracy"].get(f"prm:{r['aggregation']}", {}).get(n) for b, res in r["benchmarks"].items()}
    acc = {b: a for b, a in acc.items() if a is not None}
    if not acc:
        raise DataError(f"{path}: no PRM accuracy at N = {n} for aggregation {r['aggregation']} in it")
    return r["run"], {"n": int(n), "aggregation": r["aggregation"], "accuracy": acc, "source": str(path)}


def step_eval_metrics(path: Path) -> tuple[str, dict]:
    m = read_json(path, "step-evaluation metrics")
    if not isinstance(m, dict) or not isinstance(m.get("overall"), dict):
        raise DataError(f"{path}: not a step-evaluation metrics file (BoN/step_eval.py writes one)")
    name = path.name.removesuffix(".metrics.json")
    return name, {"macro_f1": m["overall"].get("macro_f1"), "n_solutions": m.get("n_solutions"), "source": str(path)}


@dataclass
class CardConfig(StageArgs):
    """Rewrite a trained PRM's model card (README.md), adding best-of-N and step-level metrics."""
    prm: str = field(default="runs/reweighting/prm", metadata={"help": "trained PRM directory (relative to --path)"})
    bon: str | None = field(default=None, metadata={
        "help": "comma-separated BoN results.json files (BoN/pick.py) of this PRM to add"})
    step_eval: str | None = field(default=None, metadata={
        "help": "comma-separated step-evaluation metrics files (BoN/step_eval.py) of this PRM to add"})


def update_card(cfg: CardConfig) -> Path:
    prm_dir = cfg.resolve(cfg.prm)
    if not (prm_dir / TRAINING_FILE).is_file():
        raise DataError(f"--prm {cfg.prm}: no {TRAINING_FILE} in {prm_dir} (reweighting/train.py writes one with "
                        "the trained PRM)")
    path = prm_dir / METRICS_FILE
    metrics = read_json(path, "card metrics") if path.is_file() else {}
    for key, files, read in (("bon", cfg.bon, bon_metrics), ("step_eval", cfg.step_eval, step_eval_metrics)):
        for f in filter(None, (files or "").split(",")):
            name, m = read(cfg.resolve(f.strip()))
            metrics.setdefault(key, {})[name] = m
    write_json(path, metrics)
    out = write_card(prm_dir)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    update_card(parse_args(CardConfig))
