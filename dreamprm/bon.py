"""Best-of-N verification (SPEC stage 8): score every step prefix of every candidate, select, compare.

Three steps, each a command in BoN/:

1. `score_benchmarks` (BoN/score.py): the PRM's score of every step prefix of every candidate, one JSONL line
   per question, appended and flushed, so a killed run resumes (`--resume`). With `--unit response` (a trained
   ORM, Table 1's ORM row) each candidate is scored once, as a whole.
2. `select_benchmarks` (BoN/pick.py): from those scores, without scoring again, the candidate each method
   picks among the first N candidates (N in `--n`), the selected answers and accuracy = correct / total.
3. `write_tables` (BoN/tables.py): Table 1 beside the paper's numbers, the aggregation ablation, the figure.

Rules used everywhere (BoN/README.md says why):
- A question's candidates are ordered by `sample` index; "the first N" are the N lowest indices present.
- Ties (equal scores, equal vote counts) go to the lowest sample index.
- A candidate without steps has no PRM score: it ranks below every scored candidate.
- Correctness is the candidate's `true_false`, decided at inference by the benchmark's answer rules.

Speed (`TreeScorer`): a question's candidates share the image and the question, and the sequences of one
candidate's prefixes share their beginning. All sequences of a question go into ONE row as a token tree (a
trie): shared tokens once, each token attending to its ancestors only, at the position it has in its own
sequence. One forward pass per question then gives every prefix the hidden state its own forward pass would
(up to float rounding), the image goes through the vision tower once, and only read positions are projected
onto the vocabulary.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .aggregation import AGGREGATIONS, aggregate
from .answers import extract_choice, normalize_text, parse_number
from .cli import StageArgs
from .io import AppendWriter, DataError, load_image, read_records, write_json, write_jsonl
from .models import chat
from .packing import TreeScorer
from .prm import FORMATS, PRM, PRM_MAX_SIDE, Sample, paper_text, saved_format, scored_text
from .samples import as_label, image_path, response_sample
from .steps import final_answer_text, has_final_answer, num_steps

BENCHMARKS = ("wemath", "mathvista", "mathvision", "mmvet", "mmstar")
BENCHMARK_NAMES = {"wemath": "WeMath", "mathvista": "MathVista", "mathvision": "MathVision", "mmvet": "MMVet",
                   "mmstar": "MMStar"}
CANDIDATE_FIELDS = ("id", "response", "input", "true_false")
# What one score belongs to: `step` (a PRM: every step prefix), `response` (an ORM: the whole response, once)
UNITS = ("step", "response")

# SPEC section 4: the paper's Table 1 (accuracy %, BoN with N = 8, policy InternVL-2.5-8B-MPO). The one place
# these numbers live; `tables` prints this run's numbers beside them.
PAPER_TABLE = {
    "Base model (zero-shot)": {"wemath": 51.7, "mathvista": 65.4, "mathvision": 20.4, "mmvet": 55.9, "mmstar": 58.9},
    "Self-consistency": {"wemath": 56.4, "mathvista": 67.1, "mathvision": 20.7, "mmvet": 57.4, "mmstar": 59.6},
    "ORM": {"wemath": 56.9, "mathvista": 65.3, "mathvision": 20.5, "mmvet": 55.9, "mmstar": 60.1},
    "Vanilla PRM": {"wemath": 54.2, "mathvista": 67.2, "mathvision": 20.6, "mmvet": 58.9, "mmstar": 60.8},
    "CaR-PRM": {"wemath": 54.7, "mathvista": 67.5, "mathvision": 21.0, "mmvet": 60.6, "mmstar": 61.1},
    "s1-PRM": {"wemath": 57.1, "mathvista": 65.8, "mathvision": 20.2, "mmvet": 60.1, "mmstar": 60.4},
    "DreamPRM": {"wemath": 57.4, "mathvista": 68.9, "mathvision": 22.1, "mmvet": 61.4, "mmstar": 62.3},
}


# --- candidates --------------------------------------------------------------------------------------------

@dataclass
class Candidate:
    sample: int
    response: str
    true_false: bool
    answer: str | None  # the final answer inference extracted (else taken from the response)


@dataclass
class Question:
    id: object
    dataset: str
    question: str  # `input`: the question text as the policy saw it
    image: Path | None
    options: list | None
    candidates: list[Candidate] = field(default_factory=list)  # sorted by sample index


def load_candidates(path: Path, root: Path) -> tuple[dict, Counter]:
    """Candidate records -> {id: Question} in file order, plus counts of what was wrong with them.

    Nothing here is fatal except a malformed file: a repeated (id, sample) pair keeps its first record; a
    record without `sample` gets its position among the question's records.
    """
    records = read_records(path, required=CANDIDATE_FIELDS)
    questions: dict = {}
    issues: Counter = Counter()
    for i, r in enumerate(records):
        q = questions.get(r["id"])
        if q is None:
            q = questions[r["id"]] = Question(r["id"], str(r.get("dataset") or path.stem), str(r["input"]),
                                              image_path(r, root), r.get("options") or None)
        s = r.get("sample")
        s = len(q.candidates) if s is None else int(s)
        if any(c.sample == s for c in q.candidates):
            issues["duplicate candidates (first kept)"] += 1
            continue
        response = str(r["response"] or "")
        answer = r["answer"] if "answer" in r else final_answer_text(response)
        q.candidates.append(Candidate(s, response, bool(as_label(r["true_false"], f"{path}: record {i + 1}")),
                                      None if answer is None else str(answer)))
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
        ns = sorted({int(x) for x in self.n.split(",") if x.strip()})
        if not ns or ns[0] < 1:
            raise ValueError(f"--n needs positive integers, got {self.n!r}")
        return ns

    def candidates_path(self, benchmark: str) -> Path:
        return self.resolve(self.candidates.format(benchmark=benchmark))


@dataclass
class ScoreConfig(SelectConfig):
    """Best-of-N verification: the PRM's score of every step prefix of every candidate, then selection."""
    prm: str = field(default="runs/reweighting/prm", metadata={"help": "trained PRM directory (or hub id)"})
    input_format: str = field(default="auto", metadata={
        "help": f"PRM input format: {', '.join(FORMATS)}, or auto: the one the PRM was trained with "
                "(<prm>/prm_config.json; paper if absent). Must be the format the PRM was trained with"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), bf16 or fp32"})
    batch_size: int = field(default=8, metadata={
        "help": "candidates (samples, all their step prefixes) per forward pass; a question's candidates share "
                "one packed row, so 8 = one question per pass at N = 8"})
    packing: str = field(default="tree", metadata={
        "help": "tree: one packed row per question (fast, exact); none: prm.score on padded batches"})
    select: bool = field(default=True, metadata={"help": "run the selection step after scoring"})
    unit: str = field(default="step", metadata={
        "help": "step: score every step prefix (a PRM); response: score each whole response once, final answer "
                "included (an ORM, e.g. --prm runs/orm/prm --name orm: Table 1's ORM row)"})


def resolve_format(cfg: ScoreConfig) -> str:
    if cfg.input_format != "auto":
        return cfg.input_format
    fmt = saved_format(cfg.resolve(cfg.prm)) if cfg.resolve(cfg.prm).is_dir() else None
    return fmt if fmt in FORMATS else "paper"


def _check_resume(out: Path, prm: str, fmt: str, unit: str = "step") -> None:
    """Scores of another PRM, format or unit must not be continued into the same file."""
    if not out.exists() or not out.stat().st_size:
        return
    with open(out, encoding="utf-8") as f:
        first = json.loads(f.readline())
    if (first.get("prm"), first.get("format"), first.get("unit", "step")) != (prm, fmt, unit):
        raise DataError(f"{out}: scored with PRM {first.get('prm')!r} in format {first.get('format')!r} per "
                        f"{first.get('unit', 'step')}, not {prm!r} in {fmt!r} per {unit}; use another --out or --name")


def score_questions(questions: dict, scorer, writer: AppendWriter, batch_size: int, meta: dict,
                    desc: str = "PRM scoring", progress: bool = True) -> Counter:
    """Score every not yet written question and append one record per question:
    {id, dataset, prm, format, unit, candidates: [{sample, scores: [one per step]}]} ([] for a candidate without
    steps). With meta["unit"] == "response": one score per candidate, the whole response's ([] without a final
    answer).

    Longest questions first (a GPU runs out of memory at once, not after hours); a question is written when
    all its candidates are scored, so a killed run loses at most the batches in flight.
    """
    counts: Counter = Counter()
    todo, unit = [], meta.get("unit", "step")
    for q in questions.values():
        if writer.done(q.id):
            continue
        if q.image is not None and not q.image.is_file():
            counts["questions not scored: image missing"] += 1
            if counts["questions not scored: image missing"] <= 5:
                print(f"  image not found, question {q.id!r} not scored: {q.image}")
            continue
        samples = candidate_samples(q, unit)
        counts["candidates without steps" if unit == "step" else "candidates without a final answer"] += \
            sum(s is None for s in samples)
        todo.append((q, samples))
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
        start = 0
        while start < len(chunks):
            batch, n = [], 0
            while start < len(chunks) and (not batch or n + len(chunks[start][1]) <= batch_size):
                batch.append(chunks[start])
                n += len(chunks[start][1])
                start += 1
            flat = [(t, i) for t, idx in batch for i in idx]
            if flat:
                scores = scorer([todo[t][1][i] for t, i in flat]).float().cpu().tolist()
                k = 0
                for t, i in flat:
                    m = len(todo[t][1][i].prefixes)
                    results[t][i] = scores[k:k + m]
                    k += m
            for t, _ in batch:
                left[t] -= 1
                if left[t] == 0:
                    finish(t)
                    bar.update(1)
    counts["questions scored"] += len(todo)
    return counts


def score_benchmarks(cfg: ScoreConfig) -> dict:
    """BoN/score.py: score every benchmark's candidates (resumable), then select unless --no_select."""
    fmt = resolve_format(cfg)
    if cfg.packing not in ("tree", "none"):
        raise ValueError(f"--packing must be tree or none, got {cfg.packing!r}")
    if cfg.unit not in UNITS:
        raise ValueError(f"--unit must be one of {', '.join(UNITS)}, got {cfg.unit!r}")
    out_dir = cfg.out_dir()
    prm = scorer = None
    report: dict = {}
    for bench in cfg.benchmark_list():
        src, out = cfg.candidates_path(bench), out_dir / f"{bench}.scores.jsonl"
        if not src.is_file():
            print(f"{bench}: no candidate file {src}; skipped")
            report[bench] = {"skipped": "no candidate file"}
            continue
        questions, issues = load_candidates(src, cfg.resolve("."))
        if cfg.resume:
            _check_resume(out, cfg.prm, fmt, cfg.unit)
        with AppendWriter(out, key=lambda r: r["id"], resume=cfg.resume) as w:
            todo = sum(not w.done(q) for q in questions)
            print(f"{bench}: {len(questions)} questions, {sum(len(q.candidates) for q in questions.values())} "
                  f"candidates; {w.n_resumed} questions already in {out}, {todo} to score ({fmt} format, "
                  f"per {cfg.unit})")
            if todo and prm is None:
                prm = PRM.from_pretrained(cfg.prm, cfg.device, cfg.precision, fmt).eval()
                scorer = TreeScorer(prm).score if cfg.packing == "tree" else _plain(prm)
            meta = {"prm": cfg.prm, "format": fmt, "unit": cfg.unit}
            counts = score_questions(questions, scorer, w, cfg.batch_size, meta, f"PRM {bench}") if todo else Counter()
        counts.update(issues)
        for why, k in sorted(counts.items()):
            print(f"  {why}: {k}")
        report[bench] = dict(counts)
    if all("skipped" in r for r in report.values()):
        raise DataError(f"no candidate file for any of {cfg.benchmarks!r} (looked for {cfg.candidates!r})")
    write_json(out_dir / "scoring.json", {"prm": cfg.prm, "format": fmt, "unit": cfg.unit, "benchmarks": report})
    if cfg.select:
        select_benchmarks(cfg)
    return report


def _plain(prm: PRM):
    def score(samples):
        with torch.inference_mode():
            return prm.score(samples)
    return score


# --- selection ---------------------------------------------------------------------------------------------

TIE_BREAKS = ("first", "last")  # last: the released code's `>=`
STEPLESS = ("last", "neutral")  # neutral: the released code's score of a candidate without steps, log-odds 0


def pick_best(values: list[float | None], ties: str = "first") -> int:
    """Index of the highest value; ties go to the lowest index (= lowest sample index; `last`: the highest),
    None ranks last."""
    best = 0
    for i, v in enumerate(values):
        b = values[best]
        if v is not None and (b is None or v > b or (ties == "last" and v == b)):
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


def read_scores(path: Path) -> tuple[dict, str]:
    """id -> {sample: [scores]} from a scores file (a record written twice: the last one wins), and the unit
    the scores belong to (`step`, also for files written before the unit was recorded, or `response`)."""
    out, units = {}, set()
    for r in read_records(path, required=("id", "candidates")):
        out[r["id"]] = {c["sample"]: c["scores"] for c in r["candidates"]}
        units.add(r.get("unit", "step"))
    if len(units) > 1:
        raise DataError(f"{path}: scores of several units ({', '.join(sorted(units))}) in one file")
    return out, units.pop() if units else "step"


def select_benchmarks(cfg: SelectConfig) -> dict:
    """BoN/pick.py: per benchmark, accuracy of every method at every N and the selected answers; writes
    <out>/<benchmark>.selected.jsonl and <out>/results.json."""
    if cfg.aggregation not in AGGREGATIONS:
        raise ValueError(f"--aggregation must be one of {', '.join(AGGREGATIONS)}; got {cfg.aggregation!r}")
    if cfg.ties not in TIE_BREAKS or cfg.stepless not in STEPLESS:
        raise ValueError(f"--ties must be one of {TIE_BREAKS} and --stepless one of {STEPLESS}")
    out_dir, ns = cfg.out_dir(), cfg.ns()
    results = {"run": cfg.name, "aggregation": cfg.aggregation, "ties": cfg.ties, "stepless": cfg.stepless,
               "n": ns, "benchmarks": {}}
    units = set()
    for bench in cfg.benchmark_list():
        src = cfg.candidates_path(bench)
        if not src.is_file():
            print(f"{bench}: no candidate file {src}; left out")
            continue
        questions, issues = load_candidates(src, cfg.resolve("."))
        scores_path = out_dir / f"{bench}.scores.jsonl"
        have = scores_path.is_file() and scores_path.stat().st_size
        scores, unit = read_scores(scores_path) if have else (None, "step")
        if scores is None:
            print(f"{bench}: no scores in {scores_path}: baselines only")
        expected = None
        if cfg.questions:
            qpath = cfg.resolve(cfg.questions.format(benchmark=bench))
            expected = {r["id"] for r in read_records(qpath, required=("id",))}
        res, selected, counts = evaluate(questions, scores, ns, tuple(AGGREGATIONS), cfg.aggregation, expected,
                                         unit, cfg.ties, cfg.stepless)
        counts.update(issues)
        res["counts"] = dict(counts)
        res["scored"] = scores is not None
        if scores is not None:
            res["unit"] = unit
            units.add(unit)
        results["benchmarks"][bench] = res
        write_jsonl(out_dir / f"{bench}.selected.jsonl", selected)
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
    write_json(out_dir / "results.json", results)
    print(f"wrote {out_dir / 'results.json'}")
    return results


# --- tables and the scaling figure -------------------------------------------------------------------------

@dataclass
class TablesConfig(StageArgs):
    """Table 1 (this run beside the paper), the aggregation ablation and figs/bon_scaling.png from BoN results."""
    runs: str = field(default="runs/bon", metadata={"help": "directory holding one results.json per run (<name>/)"})
    main: str = field(default="dreamprm", metadata={"help": "run of the DreamPRM row (and of the baselines)"})
    vanilla: str = field(default="vanilla", metadata={"help": "run of the Vanilla PRM row (left empty if absent)"})
    orm: str = field(default="orm", metadata={
        "help": "run of the ORM row: a trained ORM scored with BoN/score.py --unit response (left empty if absent)"})
    orm_proxy: str | None = field(default=None, metadata={
        "help": "run whose last-step score is the ablation row 'ORM proxy', never the ORM row (default: --main; "
                "none: no such row)"})
    n: int | None = field(default=None, metadata={"help": "N of Table 1 (default: the largest N evaluated)"})
    figs: str = field(default="figs", metadata={"help": "directory of bon_scaling.png"})


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.1f}"


def _mean(xs):
    return None if not xs or any(x is None for x in xs) else sum(xs) / len(xs)


def _grid(header: list[str], rows: list[list[str]], title: str, caption: str) -> tuple[str, str]:
    """The same table as Markdown and as LaTeX (booktabs)."""
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
    esc = lambda s: s.replace("%", r"\%").replace("_", r"\_").replace("—", "--")  # noqa: E731
    tex = ("\\begin{table}[t]\n\\centering\n\\caption{" + esc(caption) + "}\n\\begin{tabular}{l"
           + "c" * (len(header) - 1) + "}\n\\toprule\n" + " & ".join(map(esc, header)) + " \\\\\n\\midrule\n"
           + "".join(" & ".join(map(esc, r)) + " \\\\\n" for r in rows)
           + "\\bottomrule\n\\end{tabular}\n\\end{table}\n")
    return f"**{title}.** {caption}\n\n{md}", tex


def _proxy(main: str, orm_proxy: str | None) -> str | None:
    return None if orm_proxy == "none" else orm_proxy or main


def table1(results: dict, n: int | None = None, main: str = "dreamprm", vanilla: str = "vanilla",
           orm: str = "orm", orm_proxy: str | None = None) -> tuple[str, str]:
    """Table 1: accuracy at N per benchmark and method, each cell "this run (paper)". The ORM row is the trained
    ORM's (`orm`, scored per response); the last-step score of a PRM (`orm_proxy`, default `main`) is a
    separate ablation row with no paper number."""
    base = results[main]
    n = str(n or max(base["n"]))
    benches = [b for b in BENCHMARKS if b in base["benchmarks"]] + \
              [b for b in base["benchmarks"] if b not in BENCHMARKS]

    def ours(run, method):
        r = results.get(run)
        if r is None:
            return [None] * len(benches)
        method = method.format(agg=r["aggregation"])
        return [r["benchmarks"].get(b, {}).get("accuracy", {}).get(method, {}).get(n) for b in benches]

    proxy = _proxy(main, orm_proxy)
    name = "DreamPRM" if proxy == main else proxy
    spec = [("Base model (zero-shot)", main, "base"), ("Self-consistency", main, "self_consistency"),
            ("ORM", orm, "orm"), ("Vanilla PRM", vanilla, "prm:{agg}"), ("CaR-PRM", None, None),
            ("s1-PRM", None, None), ("DreamPRM", main, "prm:{agg}"), ("Oracle (pass@N)", main, "oracle")]
    if proxy:
        spec.insert(3, (f"ORM proxy: {name} last-step score (ablation)", proxy, "prm:last"))
    rows = []
    for label, run, method in spec:
        mine = ours(run, method) if run else [None] * len(benches)
        paper = [PAPER_TABLE.get(label, {}).get(b) for b in benches]
        cells = [f"{_fmt(a)} ({_fmt(p)})" for a, p in zip(mine, paper)]
        p_avg = _mean(paper) if label in PAPER_TABLE else None
        rows.append([label] + cells + [f"{_fmt(_mean(mine))} ({_fmt(p_avg)})"])
    caption = (f"Accuracy (%), best of N = {n}; each cell: this run (paper, N = 8, InternVL-2.5-8B-MPO). "
               f"PRM rows aggregate step scores with {base['aggregation']}; ORM = a trained outcome reward model "
               f"(run {orm}{'' if orm in results else ': none, row empty'}) scoring each whole response once"
               + (f"; ORM proxy = an ablation, not the paper's ORM: {name}'s score of the last step prefix alone"
                  if proxy else "")
               + "; base = mean single-sample accuracy; CaR-PRM and s1-PRM are not reproduced here.")
    return _grid(["Method"] + [BENCHMARK_NAMES.get(b, b) for b in benches] + ["Avg"], rows, "Table 1", caption)


def ablation(result: dict, n: int | None = None) -> tuple[str, str]:
    """Accuracy at N of every aggregation function per benchmark, for one run."""
    n = str(n or max(result["n"]))
    benches = [b for b in BENCHMARKS if b in result["benchmarks"]] + \
              [b for b in result["benchmarks"] if b not in BENCHMARKS]
    rows = []
    for how in AGGREGATIONS:
        accs = [result["benchmarks"][b]["accuracy"].get(f"prm:{how}", {}).get(n) for b in benches]
        label = how + (" (paper)" if how == "mean_log_odds" else "")
        rows.append([label] + [_fmt(a) for a in accs] + [_fmt(_mean(accs))])
    caption = f"Accuracy (%) of PRM best-of-{n} ({result['run']}) by step-score aggregation."
    return _grid(["Aggregation"] + [BENCHMARK_NAMES.get(b, b) for b in benches] + ["Avg"], rows,
                 "Aggregation ablation", caption)


def scaling_curves(results: dict, main: str, vanilla: str, orm: str = "orm") -> dict:
    """bench -> label -> {N: accuracy} for the scaling figure."""
    spec = [("DreamPRM", main, "prm:{agg}"), ("Vanilla PRM", vanilla, "prm:{agg}"), ("ORM", orm, "orm"),
            ("Self-consistency", main, "self_consistency"), ("Random pick", main, "random"),
            ("Oracle (pass@N)", main, "oracle"), ("Base model", main, "base")]
    curves: dict = defaultdict(dict)
    for label, run, method in spec:
        r = results.get(run)
        if r is None:
            continue
        for b, res in r["benchmarks"].items():
            acc = res["accuracy"].get(method.format(agg=r["aggregation"]))
            if acc:
                curves[BENCHMARK_NAMES.get(b, b)][label] = {int(k): v for k, v in acc.items()}
    return dict(curves)


def write_tables(cfg: TablesConfig) -> dict:
    """BoN/tables.py: Markdown and LaTeX tables in --out (default <runs>/tables), figs/bon_scaling.png."""
    from .plots import plot_bon_scaling

    root = cfg.resolve(cfg.runs)
    results = {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("*/results.json"))}
    if cfg.main not in results:
        raise DataError(f"{root / cfg.main / 'results.json'}: not found (runs found: {', '.join(results) or 'none'}); "
                        "run BoN/score.py or BoN/pick.py first")
    out = cfg.resolve(cfg.out or f"{cfg.runs}/tables")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    if cfg.orm in results and results[cfg.orm].get("unit") != "response":
        print(f"warning: run {cfg.orm!r} was not scored per response (BoN/score.py --unit response): "
              "its ORM cells stay empty")
    md, tex = table1(results, cfg.n, cfg.main, cfg.vanilla, cfg.orm, cfg.orm_proxy)
    parts = [md]
    (out / "table1.md").write_text(md)
    (out / "table1.tex").write_text(tex)
    written["table1"] = out / "table1.md"
    for run in (cfg.main, cfg.vanilla):
        if run in results:
            md, tex = ablation(results[run], cfg.n)
            (out / f"ablation_{run}.md").write_text(md)
            (out / f"ablation_{run}.tex").write_text(tex)
            written[f"ablation_{run}"] = out / f"ablation_{run}.md"
            parts.append(md)
    fig = plot_bon_scaling(scaling_curves(results, cfg.main, cfg.vanilla, cfg.orm),
                           cfg.resolve(cfg.figs) / "bon_scaling.png")
    written["figure"] = fig
    print("\n".join(parts))
    print(f"wrote {out}/table1.md|.tex, ablation_*.md|.tex and {fig}")
    return written
