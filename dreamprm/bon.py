"""Best-of-N verification (SPEC stage 8): score every step prefix of every candidate, select, compare.

Three steps, each a command in BoN/:

1. `score_benchmarks` (BoN/score.py): the PRM's score of every step prefix of every candidate, one JSONL line
   per question, appended and flushed, so a killed run resumes (`--resume`). With `--unit response` (a trained
   ORM, Table 1's ORM row) each candidate is scored once, as a whole.
2. `select_benchmarks` (BoN/pick.py): from those scores, without scoring again, the candidate each method
   picks among the first N candidates (N in `--n`), the selected answers and accuracy = correct / total.
3. `dreamprm.tables.write_tables` (BoN/tables.py): Table 1 beside the paper's numbers, the aggregation ablation,
   the figure.

Rules used everywhere (BoN/README.md says why):
- A question's candidates are ordered by `sample` index; "the first N" are the N lowest indices present.
- Ties (equal scores, equal vote counts) go to the lowest sample index.
- A candidate without steps has no PRM score: it ranks below every scored candidate.
- Correctness is the candidate's `true_false`, decided at inference by the benchmark's answer rules.
- Bad input records are skipped and counted per kind with their file:line (`check_candidate`, `check_scores`;
  scoring also checks each image once), up to --max_skip_fraction; a score is a finite number in [0, 1]
  wherever it is read or produced, so a NaN is never selected.

Speed (`TreeScorer`): a question's candidates share the image and the question, and the sequences of one
candidate's prefixes share their beginning. All sequences of a question go into ONE row as a token tree (a
trie): shared tokens once, each token attending to its ancestors only, at the position it has in its own
sequence. One forward pass per question then gives every prefix the hidden state its own forward pass would
(up to float rounding), the image goes through the vision tower once, and only read positions are projected
onto the vocabulary.
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .aggregation import AGGREGATIONS, aggregate
from .answers import extract_choice, normalize_text, parse_number
from .cli import StageArgs
from .io import (AppendWriter, BadRecord, DataError, Skips, iter_jsonl, load_image, lock_output, number,
                 read_records, require, where, write_json, write_jsonl)
from . import prm as prm_module
from . import shards
from .generative import FORMAT as GENERATIVE_FORMAT
from .models import chat
from .packing import TreeScorer
from .prm import (FORMATS, KINDS, PRM, PRM_MAX_SIDE, Sample, check_probabilities, paper_text, saved_format,
                  saved_kind, scored_text)
from .samples import check_policy, image_path, response_sample
from .samples import label as as_bool_label
from .steps import final_answer_text, has_final_answer, num_steps

BENCHMARKS = ("wemath", "mathvista", "mathvision", "mmvet", "mmstar")
BENCHMARK_NAMES = {"wemath": "WeMath", "mathvista": "MathVista", "mathvision": "MathVision", "mmvet": "MMVet",
                   "mmstar": "MMStar"}
CANDIDATE_FIELDS = ("id", "response", "input", "true_false")
# What one score belongs to: `step` (a PRM: every step prefix), `response` (an ORM: the whole response, once)
UNITS = ("step", "response")

# --- candidates --------------------------------------------------------------------------------------------

@dataclass
class Candidate:
    sample: int
    response: str
    true_false: bool
    answer: str | None  # the final answer inference extracted (else taken from the response)
    where: str = "?"  # file:line of its record, for messages


@dataclass
class Question:
    id: object
    dataset: str
    question: str  # `input`: the question text as the policy saw it
    image: Path | None
    options: list | None
    candidates: list[Candidate] = field(default_factory=list)  # sorted by sample index
    where: str = "?"  # file:line of its first record
    ground_truth: str | None = None  # as the first record gives it (shown, never used to select)


def check_id(r: dict) -> None:
    """Ids key dicts and are compared across files: a string or an integer (a read_records check)."""
    if isinstance(r["id"], bool) or not isinstance(r["id"], (str, int)):
        raise BadRecord("wrong type", f"id must be a string or an integer, got {r['id']!r}")


def check_candidate(r: dict) -> None:
    """The fields of a candidate record (a read_records check): those of every policy record (id, input,
    response, the label true_false), and `sample`, `answer`, `options`, `image_path` when present."""
    check_policy(r)
    if r.get("sample") is not None:
        number(r, "sample", 0, None, integer=True)
    a = r.get("answer")
    if a is not None and (isinstance(a, bool) or not isinstance(a, (str, int, float))):
        raise BadRecord("wrong type", f"answer must be a string, got {a!r}")
    for key, kind in (("options", list), ("image_path", str), ("dataset", str)):
        if r.get(key) is not None and not isinstance(r[key], kind):
            raise BadRecord("wrong type", f"{key} must be a {kind.__name__}, got {r[key]!r}")


def load_candidates(path: Path, root: Path, skips: Skips | None = None, images=None) -> tuple[dict, Counter]:
    """Candidate records -> {id: Question} in file order, plus counts of what was wrong with them.

    A bad record (`check_candidate`; with `images`, a function path -> BadRecord | None such as
    cfg.image_problem, also its image: missing, empty, unreadable, too large) is counted in `skips` and left
    out, or is a DataError naming file:line without `skips`. A repeated (id, sample) pair keeps its first
    record (counted as "duplicate candidate" in `skips`, else in the returned counts); a record without
    `sample` gets its position among the question's records.
    """
    def check(r):
        check_candidate(r)
        if images is not None and (bad := images(image_path(r, root))) is not None:
            raise bad

    records = read_records(path, required=CANDIDATE_FIELDS, check=check, skips=skips)
    questions: dict = {}
    issues: Counter = Counter()
    for r in records:
        q = questions.get(r["id"])
        if q is None:
            q = questions[r["id"]] = Question(r["id"], str(r.get("dataset") or path.stem), str(r["input"]),
                                              image_path(r, root), r.get("options") or None, where=where(r),
                                              ground_truth=None if r.get("ground_truth") in (None, "")
                                              else str(r["ground_truth"]))
        s = r.get("sample")
        s = len(q.candidates) if s is None else int(s)
        if (first := next((c for c in q.candidates if c.sample == s), None)) is not None:
            if skips is None:
                issues["duplicate candidates (first kept)"] += 1
            else:
                skips.add("duplicate candidate", where(r), f"id {r['id']!r} sample {s} is also at {first.where}")
            continue
        response = str(r["response"] or "")
        answer = r["answer"] if "answer" in r else final_answer_text(response)
        q.candidates.append(Candidate(s, response, bool(as_bool_label(r["true_false"])),
                                      None if answer is None else str(answer), where(r)))
    for q in questions.values():
        q.candidates.sort(key=lambda c: c.sample)
    return questions, issues


def candidate_samples(q: Question, unit: str = "step") -> list[Sample | None]:
    """The sample of each candidate. `step`: one prefix per step, None without steps. `response` (an ORM): one
    "prefix" that is the whole response, final answer included, None without a final answer (the ORM's train
    data keeps only responses with one, `dreamprm.orm`)."""
    img = str(q.image) if q.image is not None else None
    if unit == "response":
        return [Sample(img, q.question, [c.response]) if has_final_answer(c.response) else None
                for c in q.candidates]
    return [response_sample(q.question, c.response, img) for c in q.candidates]


# --- scoring ----------------------------------------------------------------------------------------------

def naive_scores(prm: PRM, samples: list[Sample]) -> torch.Tensor:
    """The released code's loop, the reference for tests and benchmarks/prm_scoring.py: one forward pass per
    step prefix at batch size 1, the image opened and processed for every prefix, logits over the whole
    sequence. `paper`: the chat template with image and question + "\\n\\n" + prefix, assistant header
    appended; `stepwise`: the question in the user turn, the prefix in the assistant turn. Read at the last
    token. Question and prefixes are the PRM's own (`prm.scored_text`), so only the tokenization is the loop's:
    it equals the encoder's segment-wise stepwise tokens wherever the tokenizer never merges across a step
    boundary (true of the tiny test tokenizer, not of Qwen2's)."""
    proc, model = prm.processor, prm.backbone
    out = []
    with torch.inference_mode():
        for s in samples:
            question, prefixes = scored_text(s, prm.prefix_end)
            for p in prefixes:
                image = load_image(s.image, PRM_MAX_SIDE) if isinstance(s.image, (str, Path)) else s.image
                if prm.fmt == "paper":
                    inputs = proc.apply_chat_template([chat(paper_text(question, p), image)],
                                                      add_generation_prompt=True, tokenize=True, return_dict=True,
                                                      return_tensors="pt")
                else:
                    text = proc.apply_chat_template(chat(question, image), add_generation_prompt=True,
                                                    tokenize=False) + p
                    inputs = proc(text=[text], images=None if image is None else [image], return_tensors="pt")
                inputs = inputs.to(model.device)
                if "pixel_values" in inputs:
                    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
                logits = model(**inputs).logits[:, -1]
                out.append(torch.sigmoid(prm.head(logits.float())).squeeze(-1))
    return torch.cat(out)


# --- the scoring command -----------------------------------------------------------------------------------

@dataclass
class SelectConfig(StageArgs):
    """Best-of-N selection from saved step scores: PRM picks per aggregation, baselines, accuracy per N."""
    name: str = field(default="dreamprm", metadata={
        "help": "name of this PRM's run (dreamprm, vanilla, ...): output directory runs/bon/<name>, table row"})
    benchmarks: str = field(default=",".join(BENCHMARKS), metadata={"help": "comma-separated benchmark names"})
    candidates: str = field(default="runs/rollouts/{benchmark}.jsonl", metadata={
        "help": "candidate file of each benchmark ({benchmark} is replaced), written by inference/<benchmark>.py"})
    questions: str | None = field(default=None, metadata={
        "help": "optional question file per benchmark, e.g. data/{benchmark}.jsonl: its questions without "
                "candidates count as wrong, candidates of ids not in it are reported and left out"})
    n: str = field(default="1,2,4,8", metadata={"help": "comma-separated N: select among the first N candidates"})
    aggregation: str = field(default="mean_log_odds", metadata={
        "help": f"step-score aggregation of the main PRM method: {', '.join(AGGREGATIONS)}"})
    ties: str = field(default="first", metadata={
        "help": "equal scores: first = the lowest sample index; last = the highest (the released code's >=)"})
    stepless: str = field(default="last", metadata={
        "help": "a candidate without steps: last = ranks below every scored one; neutral = one step score 0.5 "
                "(the released code's aggregate 0 in log-odds)"})

    def out_dir(self) -> Path:
        return self.resolve(self.out or f"runs/bon/{self.name}")

    def benchmark_list(self) -> list[str]:
        return [b.strip() for b in self.benchmarks.split(",") if b.strip()]

    def ns(self) -> list[int]:
        try:
            ns = sorted({int(x) for x in self.n.split(",") if x.strip()})
        except ValueError:
            ns = []
        if not ns or ns[0] < 1:
            raise DataError(f"--n needs comma-separated positive integers, got {self.n!r}")
        return ns

    def check_selection(self) -> None:
        """The selection options, checked before anything is read or written."""
        if self.aggregation not in AGGREGATIONS:
            raise DataError(f"--aggregation must be one of {', '.join(AGGREGATIONS)}; got {self.aggregation!r}")
        if self.ties not in TIE_BREAKS or self.stepless not in STEPLESS:
            raise DataError(f"--ties must be one of {', '.join(TIE_BREAKS)} and --stepless one of "
                            f"{', '.join(STEPLESS)}; got {self.ties!r}, {self.stepless!r}")
        self.ns()

    def candidates_path(self, benchmark: str) -> Path:
        return self.resolve(self.candidates.format(benchmark=benchmark))


@dataclass
class ScoreConfig(SelectConfig):
    """Best-of-N verification: the PRM's score of every step prefix of every candidate, then selection."""
    prm: str = field(default="runs/reweighting/prm", metadata={
        "help": "trained PRM directory, relative to --path; a value that is no path there and looks like a hub id "
                "(name or org/name) is loaded from the hub"})
    input_format: str = field(default="auto", metadata={
        "help": f"PRM input format: {', '.join(FORMATS)}, or auto: the one the PRM was trained with "
                "(<prm>/prm_config.json; paper if absent). Must be the format the PRM was trained with"})
    prm_kind: str = field(default="auto", metadata={
        "help": "auto: the kind the PRM was trained as (<prm>/prm_config.json; scalar if absent); scalar or "
                "generative (+ / - tokens; e.g. a converted VisualPRM or DreamPRM-1.5 checkpoint)"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), bf16 or fp32"})
    batch_size: int = field(default=8, metadata={
        "help": "candidates (samples, all their step prefixes) per forward pass; a question's candidates share "
                "one packed row, so 8 = one question per pass at N = 8"})
    packing: str = field(default="tree", metadata={
        "help": "tree: one packed row per question (fast, exact); none: prm.score on padded batches"})
    select: bool = field(default=True, metadata={"help": "run the selection step after scoring (not with --shard)"})
    shard: str = shards.shard_field()
    unit: str = field(default="step", metadata={
        "help": "step: score every step prefix (a PRM); response: score each whole response once, final answer "
                "included (an ORM, e.g. --prm runs/orm/prm --name orm: Table 1's ORM row)"})


def prm_location(cfg: ScoreConfig) -> str:
    """--prm as `from_pretrained` takes it. A value naming a path under --path (`cfg.resolve`) is that local
    directory; otherwise a value shaped like a hub id ("name" or "org/name": no leading "." or "~", at most
    one slash) is passed on as one; anything else is a local path that does not exist, an error now, before
    any output is opened."""
    local = cfg.resolve(cfg.prm)
    if local.exists():
        return str(local)
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", cfg.prm):
        return prm_module.trained_location(cfg.prm)  # a trained PRM's repo: its snapshot, whose config says kind and format
    raise DataError(f"--prm {cfg.prm}: no such directory ({local}; a relative path resolves against --path)")


def resolve_kind(cfg: ScoreConfig, location: str | None = None) -> str:
    """--prm_kind, or with auto the kind a local PRM directory records (scalar for a base model or hub id)."""
    if cfg.prm_kind != "auto":
        if cfg.prm_kind not in KINDS:
            raise DataError(f"--prm_kind must be auto or one of {', '.join(KINDS)}, got {cfg.prm_kind!r}")
        return cfg.prm_kind
    location = location or prm_location(cfg)
    local = Path(location).is_absolute() and Path(location).is_dir()
    return (saved_kind(location) if local else None) or "scalar"


def resolve_format(cfg: ScoreConfig, location: str | None = None) -> str:
    """The input format: a generative PRM has one (`conversation`); a scalar one --input_format, or with auto the
    format it was trained with."""
    if resolve_kind(cfg, location) == "generative":
        if cfg.input_format not in ("auto", GENERATIVE_FORMAT):
            raise DataError(f"--input_format {cfg.input_format}: a generative PRM reads conversations; leave it auto")
        return GENERATIVE_FORMAT
    if cfg.input_format != "auto":
        if cfg.input_format not in FORMATS:
            raise DataError(f"--input_format must be auto or one of {', '.join(FORMATS)}, got {cfg.input_format!r}")
        return cfg.input_format
    location = location or prm_location(cfg)
    # a local location is absolute (cfg.resolve); a hub id is not looked up in the working directory
    fmt = saved_format(location) if Path(location).is_absolute() and Path(location).is_dir() else None
    return fmt if fmt in FORMATS else "paper"


def load_prm(cfg: ScoreConfig, location: str, fmt: str):
    """The PRM of either kind; a directory or hub id that holds no loadable model is one line naming --prm."""
    cfg.announce("PRM", cfg.precision)  # where it runs, before the (possibly long) load
    kind = "generative" if fmt == GENERATIVE_FORMAT else "scalar"
    try:
        return prm_module.load_prm(location, cfg.device, cfg.precision, kind, fmt).eval()
    except (OSError, ValueError) as e:  # transformers' "no config.json", "not a valid model identifier", ...
        raise DataError(f"--prm {cfg.prm}: cannot load a PRM from {location}: {' '.join(str(e).split())}") from None


def check_resume(out: Path, prm: str, fmt: str, unit: str = "step") -> None:
    """Scores of another PRM, format or unit must not be continued into the same file."""
    if not out.exists() or not out.stat().st_size:
        return
    first = next((r for _, r in iter_jsonl(out)), None)
    if first is None:
        return
    if (first.get("prm"), first.get("format"), first.get("unit", "step")) != (prm, fmt, unit):
        raise DataError(f"{out}:1: scored with PRM {first.get('prm')!r} in format {first.get('format')!r} per "
                        f"{first.get('unit', 'step')}, not {prm!r} in {fmt!r} per {unit}; use another --out or --name")


def packed(chunks: list, size, batch_size: int):
    """Consecutive chunks joined into batches while their samples (`size(chunk)`) fit in batch_size; a chunk is
    never split, and a batch holds at least one."""
    batch, n = [], 0
    for c in chunks:
        if batch and n + size(c) > batch_size:
            yield batch
            batch, n = [], 0
        batch.append(c)
        n += size(c)
    if batch:
        yield batch


def score_questions(questions: dict, scorer, writer: AppendWriter, batch_size: int, meta: dict,
                    desc: str = "PRM scoring", progress: bool = True) -> Counter:
    """Score every not yet written question and append one record per question:
    {id, dataset, prm, format, unit, candidates: [{sample, scores: [one per step]}]} ([] for a candidate without
    steps). With meta["unit"] == "response": one score per candidate, the whole response's ([] without a final
    answer). Images must have been checked (`load_candidates(..., images=...)`); a score that is not a number in
    [0, 1] is a DataError naming the question.

    Longest questions first (a GPU runs out of memory at once, not after hours); a question is written when
    all its candidates are scored, so a killed run loses at most the batches in flight.
    """
    counts: Counter = Counter()
    todo, unit = [], meta.get("unit", "step")
    for q in questions.values():
        if not writer.done(q.id):
            todo.append((q, candidate_samples(q, unit)))
    # sort by length: similar rows share a batch, so padding stays small (characters stand in for tokens)
    todo.sort(key=lambda t: -(len(t[0].question) + sum(len(c.response) for c in t[0].candidates)))
    chunks = []  # (question index, candidate indices) with at most batch_size samples each
    for t, (q, samples) in enumerate(todo):
        have = [i for i, s in enumerate(samples) if s is not None]
        chunks += [(t, have[i:i + batch_size]) for i in range(0, len(have), batch_size)] or [(t, [])]
    results: dict = defaultdict(dict)
    left = Counter(t for t, _ in chunks)

    def finish(t):
        q, _ = todo[t]
        writer.write({"id": q.id, "dataset": q.dataset, **meta,
                      "candidates": [{"sample": c.sample, "scores": results[t].get(i, [])}
                                     for i, c in enumerate(q.candidates)]})
        results.pop(t, None)

    from tqdm.auto import tqdm

    with tqdm(total=len(todo), desc=desc, unit="question", disable=not progress) as bar:
        for batch in packed(chunks, lambda c: len(c[1]), batch_size):
            flat = [(t, i) for t, idx in batch for i in idx]
            if flat:
                scores = scorer([todo[t][1][i] for t, i in flat]).float().cpu().tolist()
                k = 0
                for t, i in flat:
                    m = len(todo[t][1][i].prefixes)
                    q, c = todo[t][0], todo[t][0].candidates[i]
                    check_probabilities(scores[k:k + m], c.where, f" of question {q.id!r}, sample {c.sample},",
                                        "try --precision fp32, then --resume (the questions written so far are kept)")
                    results[t][i] = scores[k:k + m]
                    k += m
            for t, _ in batch:
                left[t] -= 1
                if left[t] == 0:
                    finish(t)
                    bar.update(1)
    counts["questions scored"] += len(todo)
    return counts


def scoring_counts(questions: dict, writer: AppendWriter, unit: str) -> dict:
    """What scoring.json reports of one benchmark; counted over all its questions, so a resumed run reports
    what an uninterrupted one does."""
    samples = [s for q in questions.values() for s in candidate_samples(q, unit)]
    return {"questions": len(questions), "candidates": len(samples),
            "questions scored": sum(writer.done(q) for q in questions),
            "candidates without steps" if unit == "step" else "candidates without a final answer":
                sum(s is None for s in samples)}


def score_benchmarks(cfg: ScoreConfig) -> dict:
    """BoN/score.py: score every benchmark's candidates (resumable), then select unless --no_select.

    Everything that can be wrong with the input or the command is found before the PRM loads: options,
    --prm, every candidate file (bad records and images skipped and counted, the --max_skip_fraction
    ceiling), outputs that exist without --resume, a resume of another PRM's scores. Nothing is written
    before the first score, so a failed start leaves nothing that blocks the retry.
    """
    if cfg.packing not in ("tree", "none"):
        raise DataError(f"--packing must be tree or none, got {cfg.packing!r}")
    if cfg.unit not in UNITS:
        raise DataError(f"--unit must be one of {', '.join(UNITS)}, got {cfg.unit!r}")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise DataError(f"--precision must be auto, bf16 or fp32, got {cfg.precision!r}")
    i, n = shards.spec(cfg.shard)
    out_dir = cfg.out_dir()
    scores_path = lambda bench: shards.shard_path(out_dir / f"{bench}.scores.jsonl", i, n)  # noqa: E731
    if n == 1:
        lock_output(out_dir, directory=True)  # one run per output directory: a second copy stops here
    else:  # shards share the directory: each locks its own files; the unsharded rerun after the merge selects
        for bench in cfg.benchmark_list():
            lock_output(scores_path(bench))
    location = prm_location(cfg)
    fmt = resolve_format(cfg, location)
    if n == 1:
        cfg.output(out_dir / "scoring.json", " (scoring again continues the scores files)")
        if cfg.select:
            selection_outputs(cfg, out_dir)
    report: dict = {}
    benches: dict = {}
    positions: dict = {}
    for bench in cfg.benchmark_list():
        src = cfg.candidates_path(bench)
        if not src.is_file():
            print(f"{bench}: no candidate file {src}; left out")
            report[bench] = {"left out": f"no candidate file {src}"}
            continue
        skips = cfg.skips(src)
        questions, _ = load_candidates(src, cfg.resolve("."), skips, cfg.image_problem)
        positions[bench] = {q: k for k, q in enumerate(questions)}
        benches[bench] = dict(shards.select(list(questions.items()), i, n))
        report[bench] = {"skipped": skips.report(cfg.max_skip_fraction)}
    if not benches:
        raise DataError(f"no candidate file for any of {cfg.benchmarks!r} (looked for {cfg.candidates!r})")
    meta = {"prm": cfg.prm, "format": fmt, "unit": cfg.unit}
    scorer = None
    with ExitStack() as stack:
        writers = {}
        for bench in benches:  # every output checked (and locked) before the first score
            out = scores_path(bench)
            writers[bench] = stack.enter_context(AppendWriter(out, key=lambda r: r["id"], resume=cfg.resume))
            check_resume(out, cfg.prm, fmt, cfg.unit)
        for bench, questions in benches.items():
            w, resumed = writers[bench], writers[bench].n_resumed
            todo = sum(not w.done(q) for q in questions)
            print(f"{bench}: {len(questions)} questions, {sum(len(q.candidates) for q in questions.values())} "
                  f"candidates; {resumed} questions already in {w.path}, {todo} to score ({fmt} format, "
                  f"per {cfg.unit})")
            if todo and scorer is None:
                scorer = fast_scorer(load_prm(cfg, location, fmt), cfg.packing)
            now = score_questions(questions, scorer, w, cfg.batch_size, meta, f"PRM {bench}") if todo else Counter()
            counts = scoring_counts(questions, w, cfg.unit)
            for why, k in counts.items():
                print(f"  {why}: {k}")
            report[bench].update(counts, **{"scored in this run": now["questions scored"], "resumed": resumed})
    for bench, order in positions.items():  # in input order (scoring runs by length), then marked done
        shards.finalize(scores_path(bench), lambda r, order=order: (order.get(r["id"], len(order)), str(r["id"])))
    if not any(r.get("questions scored") for r in report.values()):
        raise DataError(f"no question scored in any benchmark of {cfg.benchmarks!r}")
    if n > 1:
        print(f"shard {cfg.shard} scored; when every shard has: python -m dreamprm.shards --out "
              f"{out_dir}/<benchmark>.scores.jsonl for each benchmark, then this command without --shard (it "
              "resumes every score and selects)")
        return report
    write_json(out_dir / "scoring.json", {"prm": cfg.prm, "prm_location": location, "format": fmt, "unit": cfg.unit,
                                          "benchmarks": report})
    if cfg.select:
        select_benchmarks(cfg)
    return report


def fast_scorer(prm, packing: str = "tree"):
    """samples -> one score per step prefix, no gradient. A scalar PRM: the tree-packed scorer (`tree`, exact and
    far fewer tokens) or `prm.score` on padded batches (`none`). A generative PRM already scores every step of a
    candidate in one pass: `prm.score`, whatever `packing` says."""
    if packing == "tree" and prm.kind == "scalar":
        return TreeScorer(prm).score

    def score(samples):
        with torch.inference_mode():
            return prm.score(samples)
    return score


# --- selection ---------------------------------------------------------------------------------------------

TIE_BREAKS = ("first", "last")  # last: the released code's `>=`
STEPLESS = ("last", "neutral")  # neutral: the released code's score of a candidate without steps, log-odds 0


def pick_best(values: list[float | None], ties: str = "first") -> int:
    """Index of the highest value; ties go to the lowest index (= lowest sample index; `last`: the highest),
    None (and anything not finite) ranks last."""
    ok = lambda v: v is not None and math.isfinite(v)  # noqa: E731  (a NaN is never picked, whatever reads it)
    best = 0
    for i, v in enumerate(values):
        b = values[best]
        if ok(v) and (not ok(b) or v > b or (ties == "last" and v == b)):
            best = i
    return best


def answer_key(answer: str | None, options: list | None = None):
    """What self-consistency counts as "the same answer": an option letter (questions with options), else a
    number, else the normalised text; None for no answer (which casts no vote)."""
    if answer is None or not str(answer).strip():
        return None
    if options and (letter := extract_choice(answer, options)) is not None:
        return ("choice", letter)
    if (x := parse_number(answer)) is not None:
        return ("number", x + 0.0)  # + 0.0 folds -0.0 into 0.0
    text = normalize_text(answer)
    return ("text", text) if text else None


def vote(keys: list) -> int:
    """Majority vote over answer keys: index of the first candidate holding the most frequent key. Ties between
    keys go to the key seen first (lowest sample index); with no vote at all, index 0."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return 0
    top = max(counts.values())
    return next(i for i, k in enumerate(keys) if k is not None and counts[k] == top)


def cot_scores(step_scores: list[list[float] | None], how: str) -> list[float | None]:
    """One aggregate per candidate (float64: fewer exact ties from rounding), None without step scores."""
    have = [s for s in step_scores if s]
    if not have:
        return [None] * len(step_scores)
    agg = aggregate(torch.tensor([x for s in have for x in s], dtype=torch.float64), [len(s) for s in have], how)
    it = iter(agg.tolist())
    return [next(it) if s else None for s in step_scores]


def question_picks(q: Question, step_scores: list[list[float] | None], k: int, aggregations=tuple(AGGREGATIONS),
                   scored: bool = True, unit: str = "step", ties: str = "first") -> dict:
    """Index of the candidate each selecting method picks among the first k of q (`step_scores[i]` belongs to
    q.candidates[i]); if `scored`, the PRM's per aggregation (unit `step`) or the ORM's (unit `response`: each
    candidate's one score)."""
    cands, steps = q.candidates[:k], step_scores[:k]
    out: dict = {}
    if scored and unit == "response":
        out["orm"] = pick_best([s[0] if s else None for s in steps], ties)
    elif scored:
        for how in aggregations:
            out[f"prm:{how}"] = pick_best(cot_scores(steps, how), ties)
    out["self_consistency"] = vote([answer_key(c.answer, q.options) for c in cands])
    return out


def evaluate(questions: dict, scores: dict | None, ns: list[int], aggregations=tuple(AGGREGATIONS),
             main: str = "mean_log_odds", expected: set | None = None, unit: str = "step",
             ties: str = "first", stepless: str = "last") -> tuple[dict, list[dict], Counter]:
    """Accuracy (%) of every method at every N, the selected answers at the largest N, and what was missing.

    `scores`: id -> {sample: [step scores]} from the scores file; None when the benchmark was not scored
    (PRM / ORM left out). `unit` of the scores: `step` gives the PRM methods `prm:<aggregation>` (`main` is the
    one the selected answers use), `response` the trained ORM's method `orm`.
    `expected`: the ids of the benchmark's question file, if given: its questions
    without candidates count as wrong, candidates of other ids are left out. `ties`, `stepless`: TIE_BREAKS,
    STEPLESS (`neutral` gives a scored candidate without steps the one step score 0.5).
    Accuracy = correct / total questions (the released code divides by total + 1). `random` is the expected
    accuracy of a uniform pick, `oracle` is pass@N, `base` the mean single-sample accuracy over all candidates.
    """
    counts: Counter = Counter()
    scored = scores is not None
    top_method = ("orm" if unit == "response" else f"prm:{main}") if scored else None
    methods = (["orm"] if unit == "response" else [f"prm:{a}" for a in aggregations]) if scored else []
    correct = {m: Counter() for m in methods + ["self_consistency", "random", "oracle"]}
    base, selected, top = 0.0, [], max(ns)
    ids = list(questions)
    total = len(ids)
    if expected is not None:
        unknown = [i for i in ids if i not in expected]
        if unknown:
            counts["unknown question ids (left out)"] += len(unknown)
        ids = [i for i in ids if i in expected]
        counts["questions without candidates (counted wrong)"] += sum(i not in questions for i in expected)
        total = len(expected)
    if scored:
        counts["scored ids not among the candidates (ignored)"] += sum(i not in questions for i in scores)
    for qid in ids:
        q = questions[qid]
        counts[f"questions with fewer than {top} candidates"] += len(q.candidates) < top
        if unit == "response":
            counts["candidates without a final answer (rank last for the ORM)"] += sum(
                not has_final_answer(c.response) for c in q.candidates)
        else:
            counts["candidates without steps (rank last for the PRM)"] += sum(num_steps(c.response) == 0
                                                                              for c in q.candidates)
        by_sample = scores.get(qid) if scored else None
        if scored and by_sample is None:
            counts["questions without scores (the lowest sample index is picked)"] += 1
        elif scored:
            counts["candidates missing from the scores file (rank last)"] += sum(c.sample not in by_sample
                                                                                for c in q.candidates)
        steps = [(by_sample or {}).get(c.sample) or None for c in q.candidates]
        if stepless == "neutral" and unit == "step" and by_sample is not None:
            steps = [[0.5] if by_sample.get(c.sample) == [] else s for c, s in zip(q.candidates, steps)]
        right = [c.true_false for c in q.candidates]
        base += sum(right) / len(right)
        for k in ns:
            picks = question_picks(q, steps, k, aggregations, scored, unit, ties)
            for m, i in picks.items():
                correct[m][k] += right[i]
            correct["random"][k] += sum(right[:k]) / len(right[:k])
            correct["oracle"][k] += any(right[:k])
            if k == top:
                selected.append(_selected(q, steps, picks, top_method))
    pct = lambda x: 100.0 * x / total if total else None  # noqa: E731
    acc = {m: {str(k): pct(c[k]) for k in ns} for m, c in correct.items()}
    acc["base"] = {str(k): pct(base) for k in ns}
    return {"total": total, "accuracy": acc}, selected, Counter({k: v for k, v in counts.items() if v})


# The other picks a selection record keeps (e.g. for BoN/export_mmvet.py): name -> method. A PRM run's last-step
# pick is kept as `orm_proxy`, the ablation, never as `orm`, which only a trained ORM's run (--unit response) has.
SIDE_PICKS = {"orm": "orm", "orm_proxy": "prm:last", "self_consistency": "self_consistency"}


def _selected(q: Question, steps, picks: dict, method: str | None) -> dict:
    method = method or "self_consistency"
    i = picks[method]
    c = q.candidates[i]
    agg = None
    if method == "orm":
        agg = steps[i][0] if steps[i] else None
    elif method.startswith("prm:"):
        agg = cot_scores(steps, method[4:])[i]
    return {"id": q.id, "dataset": q.dataset, "method": method,
            "sample": c.sample, "answer": c.answer, "true_false": c.true_false, "score": agg,
            "n_candidates": len(q.candidates),
            "picks": {name: q.candidates[picks[m]].sample for name, m in SIDE_PICKS.items() if m in picks}}


def check_scores(r: dict) -> None:
    """A scores record (a read_records check): every score a finite number in [0, 1] (the PRM's sigmoid), one per
    candidate at most per response. A bad one skips the question's record: it is then a question without
    scores (counted), never a candidate picked for a NaN."""
    check_id(r)
    unit = r.get("unit", "step")
    if unit not in UNITS:
        raise BadRecord("wrong type", f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if not isinstance(r["candidates"], list):
        raise BadRecord("wrong type", f"candidates must be a list, got {r['candidates']!r}")
    for c in r["candidates"]:
        if not isinstance(c, dict):
            raise BadRecord("wrong type", f"a candidate must be an object, got {c!r}")
        require(c, ("sample", "scores"))
        s = number(c, "sample", 0, None, integer=True)
        if not isinstance(c["scores"], list):
            raise BadRecord("wrong type", f"scores of sample {s} must be a list, got {c['scores']!r}")
        for j, x in enumerate(c["scores"], 1):
            number({f"sample {s} step {j}": x}, f"sample {s} step {j}", 0, 1)
        if unit == "response" and len(c["scores"]) > 1:
            raise BadRecord("inconsistent numbers", f"unit response has one score per candidate, sample {s} has "
                                                    f"{len(c['scores'])}")


def read_scores(path: Path, skips: Skips | None = None) -> tuple[dict, str]:
    """id -> {sample: [scores]} from a scores file (a record written twice: the last one wins), and the unit
    the scores belong to (`step`, also for files written before the unit was recorded, or `response`). A bad
    record (`check_scores`) is counted in `skips`, or is a DataError naming file:line without."""
    out, units = {}, set()
    for r in read_records(path, required=("id", "candidates"), check=check_scores, skips=skips):
        out[r["id"]] = {int(c["sample"]): c["scores"] for c in r["candidates"]}
        units.add(r.get("unit", "step"))
    if len(units) > 1:
        raise DataError(f"{path}: scores of several units ({', '.join(sorted(units))}) in one file")
    return out, units.pop() if units else "step"


def selection_outputs(cfg: SelectConfig, out_dir: Path) -> dict:
    """The outputs of the selection, locked and refused if they exist without --resume: results.json and
    <benchmark>.selected.jsonl; checked at the start, so a run never fails after its work."""
    cfg.check_selection()
    why = " (the selection is recomputed from the scores)"
    return {"results": cfg.output(out_dir / "results.json", why),
            **{b: cfg.output(out_dir / f"{b}.selected.jsonl", why) for b in cfg.benchmark_list()}}


def select_benchmarks(cfg: SelectConfig) -> dict:
    """BoN/pick.py: per benchmark, accuracy of every method at every N and the selected answers; writes
    <out>/<benchmark>.selected.jsonl and <out>/results.json (with the skipped input records), all at the end,
    so a failure leaves no partial set behind."""
    out_dir = cfg.out_dir()
    lock_output(out_dir, directory=True)  # not while BoN/score.py writes the scores
    paths, ns = selection_outputs(cfg, out_dir), cfg.ns()
    results = {"run": cfg.name, "aggregation": cfg.aggregation, "ties": cfg.ties, "stepless": cfg.stepless,
               "n": ns, "benchmarks": {}}
    units, files = set(), {}
    for bench in cfg.benchmark_list():
        src = cfg.candidates_path(bench)
        if not src.is_file():
            print(f"{bench}: no candidate file {src}; left out")
            continue
        skips = {"candidates": cfg.skips(src)}
        questions, _ = load_candidates(src, cfg.resolve("."), skips["candidates"])
        scores_path = out_dir / f"{bench}.scores.jsonl"
        scores, unit = None, "step"
        if scores_path.exists():
            skips["scores"] = cfg.skips(scores_path)
            scores, unit = read_scores(scores_path, skips["scores"])
        else:
            print(f"{bench}: no scores in {scores_path}: baselines only")
        expected = None
        if cfg.questions:
            qpath = cfg.resolve(cfg.questions.format(benchmark=bench))
            skips["questions"] = cfg.skips(qpath)
            expected = {r["id"] for r in read_records(qpath, required=("id",), check=check_id,
                                                      skips=skips["questions"])}
        skipped = {role: sk.report(cfg.max_skip_fraction) for role, sk in skips.items()}
        if not any(q in questions for q in (questions if expected is None else expected)):
            raise DataError(f"{src}: no question to select from" + (
                f": none of its ids is in {qpath}" if expected is not None else ""))
        res, selected, counts = evaluate(questions, scores, ns, tuple(AGGREGATIONS), cfg.aggregation, expected,
                                         unit, cfg.ties, cfg.stepless)
        res["counts"] = dict(counts)
        res["skipped"] = skipped
        res["scored"] = scores is not None
        if scores is not None:
            res["unit"] = unit
            units.add(unit)
        results["benchmarks"][bench] = res
        files[paths[bench]] = selected
        acc, top = res["accuracy"], str(max(ns))
        line = ", ".join(f"{m} {acc[m][top]:.1f}" for m in (f"prm:{cfg.aggregation}", "orm", "self_consistency",
                                                            "base", "oracle") if m in acc)
        print(f"{bench} (N = {top}, {res['total']} questions): {line}")
        for why, k in sorted(counts.items()):
            print(f"  {why}: {k}")
    if not results["benchmarks"]:
        raise DataError(f"no candidate file for any of {cfg.benchmarks!r} (looked for {cfg.candidates!r})")
    if len(units) > 1:
        raise DataError(f"{out_dir}: PRM (per step) and ORM (per response) scores in one run; give each its own --name")
    results["unit"] = units.pop() if units else None
    for path, selected in files.items():
        write_jsonl(path, selected)
    write_json(paths["results"], results)
    print(f"wrote {paths['results']}")
    return results
