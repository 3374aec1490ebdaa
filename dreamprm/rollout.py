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
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from . import models, prompts, shards
from .backends import Backend, Request, make_backend, stable_seed
from .cli import StageArgs
from .io import AppendWriter, DataError, Skips, read_records
from .judge import Judge, JudgeItem
from .steps import final_answer_text

QUESTION_FIELDS = ("id", "input", "ground_truth")
POLICY_FIELDS = ("id", "sample", "response", "input", "true_false", "image_path", "ground_truth", "dataset",
                 "options", "answer", "judged_by")
CALL_BATCHES = 4  # forward batches per backend call: longer calls sort by length better, shorter lose less on a kill


@dataclass
class GenerationArgs(StageArgs):
    """Options every sampling stage shares (rollouts, MC estimation)."""
    policy: str = field(default=models.POLICY, metadata={"help": "policy model: hub id or local directory"})
    backend: str = field(default="transformers", metadata={"help": "generation backend: transformers, vllm, or simulated (the CPU mini world)"})
    backend_args: str = field(default="", metadata={
        "help": "JSON object of extra backend arguments, e.g. '{\"gpu_memory_utilization\": 0.6}' for vllm"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), bf16 or fp32"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature; 0 = greedy decoding"})
    max_new_tokens: int = field(default=1024, metadata={"help": "new tokens per response"})
    batch_size: int | None = field(default=None, metadata={
        "help": "prompts per forward batch (transformers, default 8) / max concurrent sequences (vllm, default 256)"})
    judge: str = field(default=models.JUDGE, metadata={
        "help": "LLM judge for answers the rules cannot decide: hub id, directory, or 'none' (count as wrong)"})
    judge_batch_size: int = field(default=16, metadata={"help": "judge prompts per forward batch"})
    prompts_dir: str | None = field(default=None, metadata={
        "help": "directory whose structured.txt / completion.txt / judge.txt replace the shipped prompt "
                "templates (dreamprm/templates/; placeholders in inference/README.md)"})
    shard: str = field(default="0/1", metadata={"help": "i/n: process the i-th of n contiguous blocks of the "
                                                        "input (several GPUs or machines), then merge"})

    def make_backend(self) -> Backend:
        extra = json.loads(self.backend_args) if self.backend_args else {}
        if self.batch_size is not None:
            extra["batch_size"] = self.batch_size
        return make_backend(self.backend, self.policy, self.device, self.precision, **extra)

    def make_judge(self) -> Judge:
        return Judge(self.judge, self.device, self.precision, self.judge_batch_size)

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
                                 *shards.parse_shard(self.shard))


def question_input(q: dict) -> str:
    """Default question text: the question, its options as (A) (B) ..., then the dataset's hint."""
    return prompts.question_text(q["input"], q.get("hint") or None, q.get("options") or None)


def answer_key(q: dict) -> tuple[str, list | None]:
    """Default ground truth and options for the answer check."""
    return q["ground_truth"], q.get("options") or None


def read_questions(path: Path) -> list[dict]:
    questions = read_records(path, required=QUESTION_FIELDS)
    seen: dict = {}
    for i, q in enumerate(questions):
        if q["id"] in seen:
            raise DataError(f"{path}: record {i + 1}: duplicate question id {q['id']!r} "
                            f"(first at record {seen[q['id']] + 1})")
        seen[q["id"]] = i
    return questions


def image_of(cfg: StageArgs, record: dict) -> Path | None:
    p = record.get("image_path")
    return cfg.resolve(p) if p else None


def run(cfg: RolloutArgs, make_prompt: Callable[[dict], str], make_input: Callable[[dict], str] = question_input,
        truth: Callable[[dict], tuple] = answer_key, keep: Callable[[dict], bool] | None = None,
        backend: Backend | None = None, judge: Judge | None = None) -> dict:
    """Sample cfg.n responses per question and append policy records; returns the summary counts.

    `make_prompt(q)` is the full prompt, `make_input(q)` the question text stored as `input`, `truth(q)` the
    (ground truth, options) the answer is checked against, `keep(q)` an optional question filter.
    """
    if not cfg.dataset and not (cfg.questions and cfg.out):
        raise ValueError("--dataset is required unless both --questions and --out are given")
    cfg.use_prompts()
    i, n_shards = shards.parse_shard(cfg.shard)
    src = cfg.questions_path()
    questions = [q for q in read_questions(src) if keep is None or keep(q)][: cfg.limit]
    position = {q["id"]: k for k, q in enumerate(questions)}
    questions = shards.select(questions, i, n_shards)
    out = cfg.out_path()
    skipped: Counter = Counter()
    todo: list[tuple[dict, int, Path | None]] = []
    with AppendWriter(out, key=lambda r: (r["id"], r["sample"]), resume=cfg.resume) as writer:
        shards.done_marker(out).unlink(missing_ok=True)  # unfinished until finalize() says otherwise
        for q in questions:
            img = image_of(cfg, q)
            if img is not None and not img.is_file():
                skipped["missing image"] += 1
                if skipped["missing image"] <= 5:
                    print(f"skip {src}: question {q['id']!r}: image not found: {img}")
                continue
            todo += [(q, s, img) for s in range(cfg.n) if not writer.done((q["id"], s))]
        print(f"{cfg.dataset or src.stem} shard {cfg.shard}: {len(questions)} questions x {cfg.n} = "
              f"{len(questions) * cfg.n} responses; {writer.n_resumed} already in {out}, {len(todo)} to sample")
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
                for (q, s, _), text, a, (gt, opts), (ok, by) in zip(chunk, texts, answers, keys, verdicts):
                    name = q.get("dataset", cfg.dataset)
                    writer.write({"id": q["id"], "sample": s, "response": text, "input": make_input(q),
                                  "true_false": ok, "image_path": q.get("image_path"), "ground_truth": gt,
                                  "dataset": name, "options": opts, "answer": a, "judged_by": by})
                    tally[name]["right" if ok else "wrong"] += 1
                    tally[name]["no final answer"] += a is None
                bar.update(len(chunk))
    total = shards.finalize(out, lambda r: (position.get(r["id"], len(position)), r["sample"]))
    for name, c in sorted(tally.items()):
        print(f"  {name}: {c['right']} right, {c['wrong']} wrong, {c['no final answer']} without a final answer")
    if todo:
        print("  " + judge.report())
    for why, k in skipped.items():
        print(f"  skipped {k} question(s): {why}")
    print(f"wrote {out}: {total} responses")
    return {"out": out, "records": total, "sampled": len(todo), "skipped": dict(skipped),
            "per_dataset": {k: dict(v) for k, v in tally.items()}}


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
