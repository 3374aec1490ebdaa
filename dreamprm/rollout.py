"""The rollout loop of stage 2, shared by every per-dataset script in inference/.

A per-dataset script supplies only what differs between datasets: its defaults (a config dataclass that
extends `RolloutArgs`) and how a question record becomes the question text and the prompt. This module
does the rest: read the questions, take this process's shard, skip what a killed run already wrote, sample
n responses per question through a backend, check each final answer (rules, then the LLM judge), and append
one policy record per response:

    {id, sample, response, input, true_false, image_path, ground_truth, dataset, options, answer, judged_by}

`input` is the question text as the policy saw it (question, lettered options, hint); later stages put it
in front of step prefixes (PRM input) and responses (meta records).
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from . import models, prompts, shards
from .answers import FREE_FORM
from .backends import BACKENDS, Backend, Request, make_backend, stable_seed
from .cli import StageArgs
from .io import AppendWriter, BadRecord, DataError, Record, Skips, read_records, text, where
from .judge import Judge, JudgeItem, no_judge
from .steps import final_answer_text

QUESTION_FIELDS = ("id", "input", "ground_truth")
POLICY_FIELDS = ("id", "sample", "response", "input", "true_false", "image_path", "ground_truth", "dataset",
                 "options", "answer", "judged_by")
CALL_BATCHES = 4  # forward batches per backend call: longer calls sort by length better, shorter lose less on a kill


@dataclass
class GenerationArgs(StageArgs):
    """Options every sampling stage shares (rollouts, MC estimation)."""
    policy: str = field(default=models.POLICY, metadata={
        "help": "policy model: hub id or local directory (relative to --path); simulated backend: the world's "
                "policy.json (relative to --path)"})
    backend: str = field(default="transformers", metadata={"help": "generation backend: transformers, vllm, or simulated (the CPU mini world)"})
    backend_args: str = field(default="", metadata={
        "help": "JSON object of extra backend arguments, e.g. '{\"gpu_memory_utilization\": 0.6}' for vllm"})
    tensor_parallel_size: int = field(default=1, metadata={
        "help": "vllm: GPUs one engine spans (tensor parallel; for a model too large for one GPU). For throughput, "
                "keep 1 and run one engine per GPU as shards (--shard, or python -m dreamprm.slurm)"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), bf16 or fp32"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature; 0 = greedy decoding"})
    max_new_tokens: int = field(default=1024, metadata={"help": "new tokens per response"})
    batch_size: int | None = field(default=None, metadata={
        "help": "prompts per forward batch (transformers, default 8) / max concurrent sequences (vllm, default 256)"})
    judge: str = field(default=models.JUDGE, metadata={
        "help": "LLM judge for answers the rules cannot decide: hub id, directory (relative to --path), or "
                "'none' (count as wrong)"})
    judge_batch_size: int = field(default=16, metadata={"help": "judge prompts per forward batch"})
    free_form: str = field(default="math_verify", metadata={
        "help": "free-form math answers (LaTeX, expressions, intervals, sets): math_verify (HF's math-verify "
                "decides) or rules (equal after normalisation, else the judge)"})
    prompts_dir: str | None = field(default=None, metadata={
        "help": "directory whose structured.txt / completion.txt / judge.txt replace the shipped prompt "
                "templates (dreamprm/templates/; placeholders in inference/README.md)"})
    shard: str = shards.shard_field()

    def model_path(self, name: str) -> str:
        """A model option as the loader gets it: a local path resolved against --path, a hub id unchanged.

        "org/name" is both a valid hub id and a valid relative path, so the value is taken as a path when it
        exists under --path, or when it cannot be a hub id (absolute, starting with . or ~, or with more than
        one "/"); otherwise it is left to the hub."""
        p = self.resolve(name)
        if p.exists() or name.startswith((".", "~", "/")) or name.count("/") > 1:
            return str(p)
        return name

    def shard_spec(self) -> tuple[int, int]:
        return shards.spec(self.shard)

    def check_generation(self) -> None:
        """The sampling settings, checked before anything is read or loaded: each error is one line."""
        self.shard_spec()
        if self.backend not in BACKENDS:
            raise DataError(f"--backend {self.backend}: unknown; choose one of {', '.join(sorted(BACKENDS))}")
        if self.precision not in ("auto", *models.PRECISIONS):
            raise DataError(f"--precision {self.precision}: choose auto, {', '.join(models.PRECISIONS)}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise DataError(f"--temperature must be a finite number >= 0, got {self.temperature}")
        if self.free_form not in FREE_FORM:
            raise DataError(f"--free_form must be one of {', '.join(FREE_FORM)}, got {self.free_form!r}")
        for name in ("max_new_tokens", "batch_size", "judge_batch_size", "tensor_parallel_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise DataError(f"--{name} must be at least 1, got {v}")
        self.backend_kwargs()

    def backend_kwargs(self) -> dict:
        try:
            extra = json.loads(self.backend_args) if self.backend_args else {}
        except json.JSONDecodeError as e:
            raise DataError(f"--backend_args is not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(extra, dict):
            raise DataError(f"--backend_args must be a JSON object, got {self.backend_args!r}")
        if self.batch_size is not None:
            extra["batch_size"] = self.batch_size
        if self.tensor_parallel_size != 1:
            if self.backend != "vllm":
                raise DataError(f"--tensor_parallel_size is a vllm engine option; --backend {self.backend} runs "
                                "on one device (shard the input over GPUs instead)")
            extra["tensor_parallel_size"] = self.tensor_parallel_size
        return extra

    def make_backend(self) -> Backend:
        """The policy backend; says where it runs before a model loads."""
        self.check_generation()
        if self.backend == "simulated":  # a file, never a hub id; SimulatedPolicy says "simulated policy (no model)"
            model = str(self.resolve(self.policy))
        else:
            model = self.model_path(self.policy)
            self.announce(f"policy {model} ({self.backend})", self.precision)
        return make_backend(self.backend, model, self.device, self.precision, **self.backend_kwargs())

    def make_judge(self) -> Judge:
        name = None if no_judge(self.judge) else self.model_path(self.judge)
        if name is not None:
            self.announce(f"judge {name} (loaded when the rules cannot decide an answer)", self.precision)
        return Judge(name, self.device, self.precision, self.judge_batch_size, free_form=self.free_form)

    def use_prompts(self) -> None:
        """Load the prompt templates (checked before any model is loaded); name the files when replaced."""
        files = prompts.load_templates(self.resolve(self.prompts_dir) if self.prompts_dir else None)
        if self.prompts_dir:
            print("prompts: " + ", ".join(f"{name} {path}" for name, path in files.items()))


@dataclass
class RolloutArgs(GenerationArgs):
    dataset: str = field(default="", metadata={"help": "dataset name: default input and output file names"})
    questions: str | None = field(default=None, metadata={
        "help": "question records (JSON or JSONL); default data/<dataset>.jsonl"})
    n: int = field(default=8, metadata={"help": "responses per question"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N questions (smoke runs)"})

    def questions_path(self) -> Path:
        return self.resolve(self.questions or f"data/{self.dataset}.jsonl")

    def out_path(self) -> Path:
        """The output of this process: runs/rollouts/<dataset>.jsonl, or its shard-i-of-n sibling."""
        return shards.shard_path(self.resolve(self.out or f"runs/rollouts/{self.dataset}.jsonl"),
                                 *self.shard_spec())


def question_input(q: dict) -> str:
    """Default question text: the question, its options as (A) (B) ..., then the dataset's hint."""
    return prompts.question_text(q["input"], q.get("hint") or None, q.get("options") or None)


def answer_key(q: dict) -> tuple[str, list | None]:
    """Default ground truth and options for the answer check."""
    return q["ground_truth"], q.get("options") or None


def check_question(q: dict) -> None:
    """The fields a rollout reads, with the types it needs; raises BadRecord (counted, or a located error)."""
    qid = q["id"]
    if isinstance(qid, bool) or not isinstance(qid, (str, int)):
        raise BadRecord("wrong type", f"id must be a string or an integer, got {qid!r}")
    if not str(qid).strip():
        raise BadRecord("missing field", "id is empty")
    if not text(q, "input").strip():
        raise BadRecord("missing field", "input is empty")
    gt = q["ground_truth"]
    if isinstance(gt, bool) or not isinstance(gt, (str, int, float)):
        raise BadRecord("wrong type", f"ground_truth must be a string or a number, got {gt!r}")
    if isinstance(gt, float) and not math.isfinite(gt):
        raise BadRecord("not a finite number", f"ground_truth is {gt}")
    if not str(gt).strip():
        raise BadRecord("missing field", "ground_truth is empty")
    for key in ("image_path", "hint", "dataset"):
        text(q, key, allow_none=True)
    opts = q.get("options")
    if opts is not None and not (isinstance(opts, list) and all(
            isinstance(o, (str, int, float)) and not isinstance(o, bool) for o in opts)):
        raise BadRecord("wrong type", f"options must be a list of strings or null, got {opts!r}")


def read_questions(path: Path, skips: Skips | None = None) -> list[Record]:
    """Question records. A bad one (`check_question`) or a repeated id is counted in `skips` (the first record
    with an id is kept: a copy pasted twice is the usual cause) or, without skips, is a DataError at file:line."""
    kept, first = [], {}
    for q in read_records(path, required=QUESTION_FIELDS, check=check_question, skips=skips):
        if q["id"] in first:
            bad = BadRecord("duplicate question id", f"{q['id']!r}, first at {first[q['id']]}")
            if skips is None:
                raise DataError(f"{where(q)}: {bad}")
            skips.bad(bad, where(q))
            continue
        first[q["id"]] = where(q)
        kept.append(q)
    return kept


def image_of(cfg: StageArgs, record: dict) -> Path | None:
    p = record.get("image_path")
    return cfg.resolve(p) if p else None


def run(cfg: RolloutArgs, make_prompt: Callable[[dict], str], make_input: Callable[[dict], str] = question_input,
        truth: Callable[[dict], tuple] = answer_key, keep: Callable[[dict], bool] | None = None,
        backend: Backend | None = None, judge: Judge | None = None) -> dict:
    """Sample cfg.n responses per question and append policy records; returns the summary counts.

    `make_prompt(q)` is the full prompt, `make_input(q)` the question text stored as `input`, `truth(q)` the
    (ground truth, options) the answer is checked against, `keep(q)` an optional question filter.

    Every input problem is found before the output is opened or a model loaded: a bad question record (see
    `check_question`; a repeated id) or a bad image (missing, zero-byte, unreadable, over --max_image_pixels)
    skips that question, counted per kind with its file:line in the summary line and in the `.done` marker;
    more than --max_skip_fraction skipped, or nothing left to sample, is an error.
    """
    if not cfg.dataset and not (cfg.questions and cfg.out):
        raise DataError("--dataset is required unless both --questions and --out are given")
    cfg.check_generation()
    if cfg.n < 1 or (cfg.limit is not None and cfg.limit < 0):
        raise DataError(f"--n must be at least 1 and --limit at least 0, got --n {cfg.n} --limit {cfg.limit}")
    cfg.use_prompts()
    i, n_shards = cfg.shard_spec()
    src = cfg.questions_path()
    skips = cfg.skips(src)
    questions = [q for q in read_questions(src, skips) if keep is None or keep(q)][: cfg.limit]
    position = {q["id"]: k for k, q in enumerate(questions)}
    usable = []
    for q in shards.select(questions, i, n_shards):  # this shard's images only, each opened once
        if (bad := cfg.image_problem(q.get("image_path"))) is not None:
            skips.bad(bad, where(q))  # the question is skipped, the run goes on
        else:
            usable.append(q)
    print(skips.line())
    skips.check(cfg.max_skip_fraction)  # before the output is opened: a flood leaves nothing behind
    if not usable:
        raise DataError(f"{src}: no question to sample in shard {cfg.shard} ({len(questions)} pass the filters; "
                        f"{skips.line()})")
    out = cfg.out_path()
    todo: list[tuple[dict, int, Path | None]] = []
    with AppendWriter(out, key=lambda r: (r["id"], r["sample"]), resume=cfg.resume) as writer:
        shards.done_marker(out).unlink(missing_ok=True)  # unfinished until finalize() says otherwise
        for q in usable:
            img = image_of(cfg, q)
            todo += [(q, s, img) for s in range(cfg.n) if not writer.done((q["id"], s))]
        print(f"{cfg.dataset or src.stem} shard {cfg.shard}: {len(usable)} questions x {cfg.n} = "
              f"{len(usable) * cfg.n} responses ({skips.total} of {skips.seen} input records skipped); "
              f"{writer.n_resumed} already in {out}, {len(todo)} to sample")
        if todo:
            backend = backend or cfg.make_backend()
            judge = judge or cfg.make_judge()
        call = (cfg.batch_size or getattr(backend, "batch_size", 8)) * CALL_BATCHES
        tally: dict[str, Counter] = defaultdict(Counter)
        with tqdm(total=len(todo), desc=f"rollouts {cfg.dataset}", unit="response") as bar:
            for start in range(0, len(todo), call):
                chunk = todo[start:start + call]
                requests = [Request(make_prompt(q), str(img) if img else None, q,
                                    seed=stable_seed(cfg.seed, q["id"], s)) for q, s, img in chunk]
                texts = [o[0] for o in backend.generate(requests, 1, cfg.temperature, cfg.max_new_tokens)]
                answers = [final_answer_text(t) for t in texts]
                keys = [truth(q) for q, _, _ in chunk]
                verdicts = judge([JudgeItem(make_input(q), a, str(gt), opts)
                                  for (q, _, _), a, (gt, opts) in zip(chunk, answers, keys)])
                for (q, s, _), text_, a, (gt, opts), (ok, by) in zip(chunk, texts, answers, keys, verdicts):
                    name = q.get("dataset") or cfg.dataset
                    writer.write({"id": q["id"], "sample": s, "response": text_, "input": make_input(q),
                                  "true_false": ok, "image_path": q.get("image_path"), "ground_truth": gt,
                                  "dataset": name, "options": opts, "answer": a, "judged_by": by})
                    tally[name]["right" if ok else "wrong"] += 1
                    tally[name]["no final answer"] += a is None
                bar.update(len(chunk))
    per_dataset = {k: dict(v) for k, v in sorted(tally.items())}
    total = shards.finalize(out, lambda r: (position.get(r["id"], len(position)), r["sample"]),
                            summary={"questions": len(usable), "sampled": len(todo), "per_dataset": per_dataset,
                                     "skipped": skips.as_dict()})
    for name, c in per_dataset.items():
        print(f"  {name}: {c.get('right', 0)} right, {c.get('wrong', 0)} wrong, "
              f"{c.get('no final answer', 0)} without a final answer")
    if todo:
        print("  " + judge.report())
    print(skips.line())
    print(f"wrote {out}: {total} responses")
    return {"out": out, "records": total, "sampled": len(todo), "skipped": skips.as_dict(),
            "per_dataset": per_dataset}


def read_policy_records(cfg: StageArgs, spec: str, required=("id", "response", "input", "true_false"),
                        skips: Skips | None = None) -> list[dict]:
    """Policy records from a comma-separated list of files or glob patterns (resolved against --path). A bad
    record (`samples.check_policy`) is counted in `skips`, or is a DataError without it."""
    from .samples import check_policy

    paths: list[Path] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        path = cfg.resolve(part)
        matches = sorted(path.parent.glob(path.name)) if any(c in path.name for c in "*?[") else [path]
        if not matches:
            raise DataError(f"{path}: no file matches")
        paths += matches
    if not paths:
        raise DataError("no response files given")
    records, seen = [], Counter()
    for path in paths:
        for r in read_records(path, required=required, check=check_policy, skips=skips):
            # The released layout has one file per rollout index (0.json .. 3.json) and no `sample`: a record
            # without one is its question's next response, as best-of-N numbers candidates.
            if r.get("sample") is None:
                r["sample"] = seen[r["id"]]
            seen[r["id"]] += 1
            records.append(r)
    return records
