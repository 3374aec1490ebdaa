"""Stage 8, MM-Vet: the best-of-N selections as results files of the official MM-Vet grader (GPT-4, soft scores).

    python BoN/export_mmvet.py --path . [--names dreamprm,vanilla] [--all_candidates] [--out runs/mmvet_grader]
    python mm-vet_evaluator.py --mmvet_path /path/to/mm-vet --result_path runs/mmvet_grader --model dreamprm

Per run <name> with a runs/bon/<name>/mmvet.selected.jsonl (BoN/pick.py): <name>.json (the PRM's pick),
<name>_orm.json and <name>_self_consistency.json; with --all_candidates also candidate_<k>.json (every
question's k-th candidate). Each file is one JSON object "v1_<n>" -> answer string holding every question;
export_summary.json says what was written and which input records were skipped.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's dreamprm
import json
from dataclasses import dataclass, field

from dreamprm.cli import StageArgs, parse_args
from dreamprm.io import DataError, atomic_write_text, read_records, write_json
from dreamprm.mmvet import check_key, grader_key, grader_results, key_order, read_candidates, selections


@dataclass
class ExportConfig(StageArgs):
    """Write the selected MM-Vet answers of every BoN run (and optionally every candidate) in the input format
    of the official grader: a JSON object mapping each question key "v1_<n>" to the answer string."""
    runs: str = field(default="runs/bon", metadata={"help": "folder of the BoN runs (BoN/pick.py's runs/bon/<name>/)"})
    names: str = field(default="", metadata={
        "help": "comma-separated run names; default: every run with a <benchmark>.selected.jsonl"})
    benchmark: str = field(default="mmvet", metadata={"help": "benchmark name: <runs>/<name>/<benchmark>.selected.jsonl"})
    candidates: str = field(default="runs/rollouts/mmvet.jsonl", metadata={
        "help": "the candidates the selections point into (inference/mmvet.py)"})
    questions: str = field(default="data/mmvet.jsonl", metadata={
        "help": "MM-Vet question records: the grader needs every question (one without a pick gets \"\"); "
                "if the file is absent, the candidates' ids"})
    text: str = field(default="final", metadata={
        "help": "what is exported: final (the text after the last 'Final answer:', the whole response if there "
                "is none; the paper's code) or response (the whole response)", "choices": ["final", "response"]})
    all_candidates: bool = field(default=False, metadata={"help": "also write candidate_<k>.json for every sample index k"})
    grader_questions: int = field(default=218, metadata={
        "help": "the grader looks up every key v1_0 .. v1_<n-1> of mm-vet.json and stops at a missing one: keys "
                "absent from --questions are written too, as \"\" (counted); 0 writes the questions' keys only"})


def file_name(run: str, method: str, main: str) -> str:
    # The grader takes the file stem as its --model name: the run's main pick (PRM or ORM) is the run itself.
    scorer = method == main and (method == "orm" or method.startswith("prm:"))
    return f"{run}.json" if scorer else f"{run}_{method.replace(':', '-')}.json"


def main(argv=None) -> dict:
    cfg = parse_args(ExportConfig, argv)
    # the whole folder is this stage's: locked, and refused if it holds files, unless --resume
    out = cfg.output(cfg.out or "runs/mmvet_grader", " (the export is recomputed)", directory=True)
    src = cfg.resolve(cfg.candidates)
    skips = {"candidates": cfg.skips(src)}
    candidates = read_candidates(src, skips["candidates"])
    qfile = cfg.resolve(cfg.questions)
    if qfile.is_file():
        skips["questions"] = cfg.skips(qfile)
        keys = key_order(grader_key(r["id"]) for r in read_records(qfile, required=("id",), check=check_key,
                                                                    skips=skips["questions"]))
    else:
        print(f"{qfile}: not found; the questions are those of the candidate file")
        keys = key_order(k for k, _ in candidates)
    have = set(keys)
    absent = [f"v1_{i}" for i in range(cfg.grader_questions) if f"v1_{i}" not in have]
    if absent:
        print(f"{len(absent)} of the grader's {cfg.grader_questions} questions are not in {qfile.name}: written as \"\"")
        keys = key_order(keys + absent)
    root = cfg.resolve(cfg.runs)
    names = [n.strip() for n in cfg.names.split(",") if n.strip()] or sorted(
        p.parent.name for p in root.glob(f"*/{cfg.benchmark}.selected.jsonl"))
    jobs = []  # (file name, {key: sample})
    for name in names:
        path = root / name / f"{cfg.benchmark}.selected.jsonl"
        if not path.is_file():
            raise DataError(f"{path}: no selection file (run BoN/pick.py --name {name} first)")
        skips[f"selection {name}"] = cfg.skips(path)
        main, by_method = selections(path, skips[f"selection {name}"])
        jobs += [(file_name(name, method, main), picks) for method, picks in by_method.items()]
    skipped = {role: sk.report(cfg.max_skip_fraction) for role, sk in skips.items()}
    if cfg.all_candidates:
        samples = sorted({s for _, s in candidates})
        jobs += [(f"candidate_{s}.json", {k: s for k, t in candidates if t == s}) for s in samples]
    if not jobs:
        raise DataError(f"no {cfg.benchmark}.selected.jsonl under {root} and no --all_candidates: nothing to export")
    files = {}  # every file computed before the first is written: an error leaves no partial export behind
    for name, picks in jobs:
        results, counts = grader_results(keys, picks, candidates, cfg.text)
        counts["picks of ids not among the questions (left out)"] = len(set(picks) - set(keys))
        files[name] = results, counts
    written = {}
    for name, (results, counts) in files.items():
        # ASCII escapes, as the grader's own example file: it opens the file in the platform's default encoding.
        atomic_write_text(out / name, json.dumps(results, indent=4) + "\n")
        written[name] = out / name
        notes = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        print(f"wrote {out / name}: {len(results)} questions" + (f"; {notes}" if notes else ""))
    write_json(out / "export_summary.json", {
        "files": {name: {"questions": len(r), **c} for name, (r, c) in files.items()}, "skipped": skipped})
    print(f"grade with: python mm-vet_evaluator.py --mmvet_path <mm-vet folder> --result_path {out} "
          f"--model {next(iter(written)).removesuffix('.json')}")
    return written


if __name__ == "__main__":
    main()
