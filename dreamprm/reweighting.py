"""Domain reweighting by bi-level optimisation (SPEC stage 7), built on betty-ml.

Lower level (phi, the PRM):  min  sum_i w_{d(i)}(alpha) * (PRM(prefix_i) - MC accuracy_i)^2 / N
Upper level (alpha):         min  sum_j (sigmoid(mean_k logit PRM(prefix_jk)) - true_false_j)^2 / M
Domain weights: w = softplus(alpha) / mean(softplus(alpha)), alpha starting at 0 so every weight starts
at 1 and they always average 1. The hypergradient is betty's (darts by default, unroll 5 lower steps).

DreamPRM-1.5 through the same loop (reweighting/README.md): `--prm_kind generative` trains the backbone's own
`+` / `-` tokens (lower: cross-entropy per response; upper: `generative.upper_loss`), and `--reweight
instance_table | instance_net` replaces the domain weights by one weight per train instance
(`dreamprm.instance_weights`). Everything else (schedule, resume, logs, checks) is shared.

Deviations from a plain use of betty, each for a reason:
- bf16 autocast is ours: betty's `precision="bf16"` uses a CUDA-only autocast and silently runs fp32 on
  a CPU. Master weights stay fp32 (`--precision bf16`, the default). The released code instead loads the PRM
  in bf16 and steps the optimiser on those weights (`--precision bf16_weights`): at lr 5e-7 nearly every
  update of a bf16 weight rounds away, so only the fp32 head really trains (tests/test_reweighting.py).
- Optimisers are `torch.optim.Adam(decoupled_weight_decay=True)`, the same update as AdamW: betty rebuilds
  an optimiser from `optimizer.defaults`, which AdamW's own constructor rejects in current torch.
- darts / sama perturb phi and differentiate the lower loss with respect to alpha only; that needs the
  per-node losses at the perturbed phi but no graph through the PRM, so those two forward passes run
  under no_grad. Same numbers, a fraction of the time and memory.
- The engine loop is betty's, plus resume from a checkpoint, periodic saving and a JSONL log; the run directory
  is locked for one writer, and bad train / meta records are skipped and counted when the data is read.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import random
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from betty.configs import Config, EngineConfig
from betty.engine import Engine
from betty.problems import ImplicitProblem
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .aggregation import aggregate
from .card import TRAINING_FILE, write_card
from .cli import StageArgs
from .domains import MMPR_DOMAINS, domain_table
from .io import DataError, atomic_write_text, write_json
from .export import DEFAULT_THRESHOLD
from .generative import CHAIN_AGGREGATIONS, LOSS_TARGETS, GenerativePRM, upper_loss
from .instance_weights import ACTIVATIONS, InstanceNet, InstanceTable, per_domain
from .models import PRM_BASE
from .packing import TreeScorer
from .prm import FORMATS, HEAD_FILE, KINDS, PREFIX_ENDS, PRM
from .samples import NO_STEP_RULES, load_meta, load_train

# betty prints INFO lines for every problem and step; our progress bar and log.jsonl say the same.
logging.getLogger("betty").addFilter(lambda record: record.levelno >= logging.WARNING)

HYPERGRADIENTS = ("darts", "neumann", "cg", "sama")
REWEIGHTS = ("domain", "instance_table", "instance_net")
NET_INPUTS = ("plus_minus", "label")
PRECISIONS = ("fp32", "bf16", "bf16_weights")
REGIMES = {"fp32": "fp32 weights, no autocast", "bf16": "bf16 autocast, fp32 master weights",
           "bf16_weights": "bf16 weights and optimiser state (the released code's regime)"}
FINITE_DIFFERENCE = ("darts", "sama")  # methods that only need the lower loss's value at perturbed phi


@dataclass
class ReweightConfig(StageArgs):
    """Train the PRM and the domain weights together by bi-level optimisation (DreamPRM, SPEC stage 7)."""
    train: str = field(default="runs/mc/train.jsonl", metadata={"help": "train records (JSON or JSONL)"})
    meta: str = field(default="runs/meta/meta.jsonl", metadata={"help": "meta records (JSON or JSONL)"})
    prm: str = field(default=PRM_BASE, metadata={
        "help": "PRM backbone: hub id or local directory; a trained PRM directory (e.g. a --baseline run's prm) "
                "continues from it: the 1.5 cold start"})
    prm_kind: str = field(default="scalar", metadata={
        "help": "scalar: DreamPRM's head on the logits, MSE to MC accuracy; generative: the backbone's own + / - "
                "tokens in a multi-turn conversation (DreamPRM-1.5, VisualPRM), cross-entropy on them. Saved with "
                "the PRM, so scoring reads it back"})
    out: str = field(default="runs/reweighting", metadata={"help": "output directory"})
    figs: str = field(default="figs", metadata={"help": "directory for the two domain-weight figures"})
    input_format: str = field(default="paper", metadata={"help": f"PRM input format: {', '.join(FORMATS)}"})
    prefix_end: str = field(default="stripped", metadata={
        "help": f"where a step prefix ends for the PRM: {', '.join(PREFIX_ENDS)} (stripped: without the whitespace "
                "around it, one score per step whatever the source wrote; raw: as the record has it, the released "
                "code's behaviour). Saved with the PRM, so scoring reads it back"})
    iterations: int = field(default=10000, metadata={"help": "lower-level iterations"})
    unroll_steps: int = field(default=5, metadata={"help": "lower steps per upper step"})
    lr: float = field(default=5e-7, metadata={"help": "lower-level (PRM) learning rate, AdamW"})
    lr_step: int = field(default=5000, metadata={"help": "StepLR step size of the lower level"})
    lr_gamma: float = field(default=0.5, metadata={"help": "StepLR decay of the lower level"})
    weight_decay: float = field(default=0.0, metadata={
        "help": "lower-level weight decay (0: the released code's AdamW takes only the lr)"})
    adam_eps: float = field(default=1e-6, metadata={
        "help": "Adam epsilon of both levels (1e-6: the released code's transformers AdamW)"})
    meta_lr: float = field(default=0.01, metadata={"help": "upper-level (domain weights) learning rate"})
    meta_weight_decay: float = field(default=1e-3, metadata={"help": "upper-level weight decay"})
    hypergradient: str = field(default="darts", metadata={"help": f"betty method: {', '.join(HYPERGRADIENTS)}"})
    darts_alpha: float = field(default=0.01, metadata={"help": "darts/sama finite-difference radius"})
    neumann_iterations: int = field(default=1, metadata={"help": "Neumann series terms"})
    train_batch_size: int = field(default=1, metadata={"help": "train samples per lower step"})
    meta_batch_size: int = field(default=1, metadata={"help": "meta records per upper step"})
    gradient_accumulation: int = field(default=1, metadata={"help": "lower batches per optimiser step"})
    precision: str = field(default="bf16", metadata={
        "help": f"{', '.join(PRECISIONS)}: bf16 = autocast with fp32 master weights; bf16_weights = the released "
                "code's regime, weights in bf16 and the optimiser stepping on them"})
    save_every: int = field(default=1000, metadata={"help": "checkpoint interval (iterations)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many recent checkpoints to keep"})
    log_every: int = field(default=10, metadata={"help": "log interval (iterations)"})
    strategy: str = field(default="default", metadata={
        "help": "betty strategy: default (one device), or distributed / zero / fsdp under torchrun (CUDA only)"})
    logger: str = field(default="none", metadata={"help": "betty logger: none, tensorboard, wandb"})
    dry_run: bool = field(default=False, metadata={
        "help": "print the launch's world size, ranks and per-rank batch (every rank joins a gloo group), then "
                "stop before any model loads (dreamprm/launch.py)"})
    domains: str = field(default="", metadata={
        "help": "allowed domain names, comma-separated, or 'mmpr' for the paper's 15; empty: taken from the data"})
    baseline: bool = field(default=False, metadata={"help": "vanilla PRM: all weights fixed at 1, same data"})
    meta_without_steps: str = field(default="whole", metadata={
        "help": "meta records with no step text: 'whole' scores the whole input as one step, 'skip' drops them"})
    meta_packing: str = field(default="tree", metadata={
        "help": "upper level, paper format: 'tree' scores a meta record's prefixes as one token tree (exact, "
                "far fewer tokens), 'none' as a padded batch; gradient checkpointing and torchrun use 'none'"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for GPU memory"})
    lora_rank: int = field(default=0, metadata={"help": "LoRA rank on the backbone (0: full fine-tuning)"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers for input encoding"})
    reweight: str = field(default="domain", metadata={
        "help": "what the upper level weighs: domain (DreamPRM), instance_table (DreamPRM-1.5: one weight per "
                "train sample, id = its record's `instance`, else its file:line)"})
    activation: str = field(default="leaky_relu", metadata={
        "help": "instance weights: leaky_relu, relu, none, clip ([-1, 3]) or sigmoid of the raw weight"})
    initialization: float = field(default=1.0, metadata={"help": "instance table: the raw weights' start"})
    net_hidden: int = field(default=500, metadata={"help": "instance net: hidden width of the MLP"})
    net_layers: int = field(default=1, metadata={"help": "instance net: hidden layers of the MLP"})
    net_input: str = field(default="plus_minus", metadata={
        "help": "instance net input: plus_minus = softmax of the [+, -] logits (the 1.5 release); label = of the "
                "[label token, other token] logits, i.e. how far the PRM agrees with each step's label"})
    net_input_grad: bool = field(default=False, metadata={
        "help": "instance net: let the lower loss's gradient reach the PRM through the weight's input (the + / - "
                "logits), as the 1.5 release does; off: the PRM cannot lower its loss by lowering its weights"})
    aggregation: str = field(default="mean", metadata={
        "help": f"generative upper loss: a meta chain's score from its steps' ({', '.join(CHAIN_AGGREGATIONS)})"})
    loss_target: str = field(default="both", metadata={
        "help": "generative upper loss: plus = the chain's P(+) against its label; both = wrong chains scored on "
                "P(-), every chain against 1 (the 1.5 default)"})
    label_threshold: float = field(default=DEFAULT_THRESHOLD, metadata={
        "help": "generative kind on MC-labelled nodes: a step is '+' when its accuracy > this (rows keep theirs)"})


class DomainWeights(nn.Module):
    """One raw parameter per domain; weight = softplus(raw) / mean(softplus(raw))."""

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = list(names)
        self.raw = nn.Parameter(torch.zeros(len(names)))

    def forward(self) -> torch.Tensor:
        sp = F.softplus(self.raw)
        return sp / sp.mean()

    def as_dict(self) -> dict[str, float]:
        with torch.no_grad():
            return {n: round(float(w), 6) for n, w in zip(self.names, self())}


class InfiniteSampler(Sampler):
    """Shuffled epochs without end, seeded, starting at any position: a resumed run sees the same data."""

    def __init__(self, n: int, seed: int, start: int = 0):
        self.n, self.seed, self.start = n, seed, start

    def __len__(self):  # one epoch; the iterator itself never ends
        return self.n

    def __iter__(self):
        epoch, offset = divmod(self.start, self.n)
        while True:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            yield from order[offset:]
            epoch, offset = epoch + 1, 0


class _Samples(Dataset):
    def __init__(self, samples, labels, rows=None, instances=None):
        self.samples, self.labels, self.rows = samples, labels, rows  # rows: each sample's weight (domain or instance)
        self.instances = instances

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return i


def _collate(ds: _Samples, encoder):
    """`encoder`: a scalar `PRMEncoder` (one label and weight row per prefix), a `GenerativeEncoder` (samples are
    chats: one weight row per chat, its labels inside it), or None: the batch keeps its samples for the
    tree-packed scorer, which encodes them itself."""
    generative = hasattr(encoder, "encode_chat")

    def collate(idx: list[int]) -> dict:
        samples = [ds.samples[i] for i in idx]
        if generative:
            out = {"prm": [encoder.encode_chat(c) for c in samples], "counts": [len(c.labels) for c in samples]}
        else:
            out = {"counts": [len(s.prefixes) for s in samples]}
            out.update({"prm": encoder(samples)} if encoder is not None else {"samples": samples})
        if ds.rows is None:  # meta: one true/false label per record
            out["labels"] = torch.tensor([ds.labels[i] for i in idx])
        elif generative:
            out["weight_rows"] = torch.tensor([ds.rows[i] for i in idx])
            out["instances"] = [ds.instances[i] for i in idx]
        else:  # train: one MC label and one weight row per prefix
            out["labels"] = torch.tensor([a for i in idx for a in ds.labels[i]])
            out["weight_rows"] = torch.tensor([ds.rows[i] for i in idx for _ in ds.labels[i]])
        return out
    return collate


class _Common:
    """bf16 autocast on any device (betty's own is CUDA-only), and the last losses kept for the log."""
    last: dict = {}

    def get_loss(self, batch):
        loss, loss_dict = super().get_loss(batch)
        self.last = loss_dict
        return loss, loss_dict

    def training_step_exec(self, batch):
        with torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16,
                            enabled=self.cfg.precision != "fp32"):
            return self.training_step(batch)


class LowerPRM(_Common, ImplicitProblem):
    """phi: the PRM trained on domain-weighted MSE against MC accuracy."""
    _in_own_step = False

    def get_loss(self, batch):
        self._in_own_step = True  # betty's hypergradient calls training_step_exec outside get_loss
        try:
            return super().get_loss(batch)
        finally:
            self._in_own_step = False

    def training_step(self, batch):
        fd = not self._in_own_step and self.config.type in FINITE_DIFFERENCE
        with torch.no_grad() if fd else contextlib.nullcontext():  # fd: only d loss / d alpha is wanted
            per, two_way = self._losses(batch)
        rows = batch["weight_rows"].to(self.device)
        if not hasattr(self, "weights"):  # the baseline
            w = torch.ones_like(per)
        elif isinstance(self.weights.module, InstanceNet):
            w = self.weights(self._net_input(batch, two_way), batch["counts"])
            if self._in_own_step:
                self.weights.module.remember(batch["instances"], w)
        else:
            w = self.weights()[rows]
        loss = (w * per).mean()
        if not self._in_own_step:
            return loss  # betty's hypergradient code wants the bare loss
        return {"loss": loss, "plain_loss": per.mean().item()}

    def _net_input(self, batch, two_way):
        """What the instance net reads. Detached (the default), the input is a constant of the lower step: the
        one its own pass computed, also in betty's finite-difference passes at perturbed phi, whose input would
        otherwise move with phi and add a term the detached lower problem does not have (the hypergradient test
        checks this). `--net_input_grad`: the live logits, gradient and all, as the 1.5 release."""
        if self.cfg.net_input == "label":  # column 0: the logit of the token the step is labelled with
            minus = self.module.encoder.label_ids[1]
            is_minus = torch.tensor([t == minus for e in batch["prm"] for t in e.targets], device=two_way.device)
            two_way = torch.where(is_minus[:, None], two_way.flip(-1), two_way)
        if self.cfg.net_input_grad:
            return two_way
        if self._in_own_step or getattr(self, "_input_of", (None,))[0] is not batch:
            self._input_of = (batch, two_way.detach())
        return self._input_of[1]

    def _losses(self, batch):
        """Per-row losses (scalar: per prefix, MSE to MC accuracy; generative: per chat, cross-entropy on its
        label tokens) and, for the generative kind, the + / - logits the instance net reads."""
        if isinstance(self.module, GenerativePRM):
            logits = self.module.label_logits(batch["prm"])
            return self.module.lm_loss(batch["prm"], logits=logits), self.module.two_way(logits)
        return (self.module(batch["prm"]) - batch["labels"].to(self.device)) ** 2, None

    def configure_train_data_loader(self):
        return self.cfg.loader

    def trainable_parameters(self):
        # betty asks for this list several times per step; with LoRA it is a filtered subset.
        if getattr(self, "_trainable", None) is None:
            self._trainable = [p for p in self.module.parameters() if p.requires_grad]
        return self._trainable


class UpperWeights(_Common, ImplicitProblem):
    """alpha: domain weights trained on the aggregation loss over whole meta CoTs."""
    last_grad: torch.Tensor | None = None

    def training_step(self, batch):
        labels = batch["labels"]
        if isinstance(self.prm.module, GenerativePRM):  # DreamPRM-1.5: aggregated P(+) (or P(label)) vs label
            two_way = self.prm.module.two_way(self.prm.module.label_logits(batch["prm"]))
            return {"loss": upper_loss(two_way, batch["counts"], labels, self.cfg.aggregation, self.cfg.loss_target)}
        scores = self.cfg.tree.score(batch["samples"], grad=True) if "samples" in batch else self.prm(batch["prm"])
        cot = aggregate(scores.float(), batch["counts"], "mean_log_odds")
        return {"loss": F.mse_loss(cot, labels.to(cot.device))}

    def grad_callback(self):
        grads = [p.grad.detach().flatten() for p in self.module.parameters() if p.grad is not None]
        self.last_grad = torch.cat(grads).clone() if grads else None

    def configure_train_data_loader(self):
        return self.cfg.loader


class _Cfg:
    def __init__(self, cfg: ReweightConfig, loader, tree: TreeScorer | None = None):
        self.precision, self.loader, self.tree = cfg.precision, loader, tree
        self.aggregation, self.loss_target = cfg.aggregation, cfg.loss_target
        self.net_input, self.net_input_grad = cfg.net_input, cfg.net_input_grad


class DreamEngine(Engine):
    """betty's loop with resume, checkpoints and a JSONL log of losses and weights."""

    def __init__(self, problems, config, dependencies, trainer: "Reweighter"):
        self.trainer = trainer
        super().__init__(problems, config, dependencies)

    def run(self):
        self.train()
        for it in range(self.trainer.start + 1, self.train_iters + 1):
            self.global_step = it
            self.train_step()
            self.trainer.after_step(it)
        self.cleanup()


class Reweighter:
    """Builds data, PRM, domain weights and the betty problems from a config; `run()` trains."""

    def __init__(self, cfg: ReweightConfig):
        self.cfg = cfg
        for name, allowed in (("hypergradient", HYPERGRADIENTS), ("precision", PRECISIONS), ("input_format", FORMATS),
                              ("prefix_end", PREFIX_ENDS), ("meta_without_steps", NO_STEP_RULES),
                              ("reweight", REWEIGHTS), ("activation", tuple(ACTIVATIONS)), ("prm_kind", KINDS),
                              ("aggregation", CHAIN_AGGREGATIONS), ("loss_target", LOSS_TARGETS),
                              ("net_input", NET_INPUTS)):
            if getattr(cfg, name) not in allowed:
                raise DataError(f"--{name} must be one of {', '.join(allowed)}; got {getattr(cfg, name)!r}")
        if cfg.reweight == "instance_net" and cfg.prm_kind != "generative":
            raise DataError("--reweight instance_net reads the PRM's + / - logits: it needs --prm_kind generative")
        # One writer per run directory, taken before anything in it is read or written: two copies resuming one
        # run would read each other's half-written checkpoints and log iterations twice. Under torchrun every
        # rank shares the directory and only rank 0 writes (after_step, finish), so only rank 0 locks it.
        if int(os.environ.get("RANK", "0")) == 0:
            self.out = cfg.output(cfg.out, " (it continues from the newest checkpoint), choose another --out",
                                  directory=True)
        else:
            self.out = cfg.resolve(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.announce()
        self._load_data()
        allowed = None
        if cfg.domains == "mmpr":
            allowed = MMPR_DOMAINS
        elif cfg.domains:
            allowed = [d.strip() for d in cfg.domains.split(",")]
        try:
            self.domains = domain_table(self.train_data.domains, allowed)
        except ValueError as e:  # name the first record of the first unknown domain
            first = next(w for d, w in self.train_data.domain_where.items() if d not in allowed)
            raise DataError(f"{first}: {e}") from None
        self.domain_index = {d: i for i, d in enumerate(self.domains)}
        # bf16 is autocast, so the optimiser updates fp32 master weights (an lr of 5e-7 vanishes in bf16 rounding);
        # bf16_weights keeps the released code's bf16 weights for a like-for-like comparison.
        self.weight_precision = "bf16" if cfg.precision == "bf16_weights" else "fp32"
        prm = cfg.resolve(cfg.prm)  # a local directory relative to --path, else a hub id
        self.prm = self._load_prm(str(prm) if prm.exists() else cfg.prm, cfg.device)
        self.peft = None
        self._adapt_backbone()
        self.domain_of = dict(zip(self.train_data.instances, self.train_data.domains))
        self.rows = list(range(len(self.train_data.samples)))  # instance weights: a row per sample
        if cfg.reweight == "domain":
            self.weights = DomainWeights(self.domains)
            self.rows = [self.domain_index[d] for d in self.train_data.domains]
        elif cfg.reweight == "instance_net":
            self.weights = InstanceNet(cfg.net_hidden, cfg.net_layers, cfg.activation)
        else:
            try:
                self.weights = InstanceTable(self.train_data.instances, cfg.activation, cfg.initialization)
            except ValueError as e:
                raise DataError(f"{cfg.resolve(cfg.train)}: {e}") from None
        self.weights = self.weights.to(self.prm.device)
        self.start = 0
        self.t0 = time.perf_counter()

    def _load_data(self):
        cfg, root = self.cfg, Path(self.cfg.path).resolve()
        train, meta = cfg.resolve(cfg.train), cfg.resolve(cfg.meta)
        tskips, mskips = cfg.skips(f"train {train}"), cfg.skips(f"meta {meta}")
        if cfg.prm_kind == "generative":  # conversation rows or our records, as chats (dreamprm.chats)
            from .chats import load_meta_chats, load_train_chats, train_system

            self.train_data = load_train_chats(train, root, cfg.images, tskips, cfg.label_threshold)
            self.system = train_system(self.train_data)
            self.meta_data = load_meta_chats(meta, root, cfg.meta_without_steps, cfg.images, mskips, self.system)
        else:
            self.train_data = load_train(train, root, cfg.input_format, cfg.prefix_end, cfg.images, tskips)
            self.meta_data = load_meta(meta, root, cfg.meta_without_steps, cfg.images, mskips)
        self._report_skips()
        print(f"meta records by label and step text ({cfg.meta}; rule for records without steps: "
              f"{cfg.meta_without_steps}):\n{self.meta_data.table()}")
        if self.meta_data.warning():
            print(f"WARNING: {self.meta_data.warning()}")

    def _load_prm(self, name: str, device):
        if self.cfg.prm_kind == "generative":
            return GenerativePRM.from_pretrained(name, device, self.weight_precision, system=self.system)
        return PRM.from_pretrained(name, device, self.weight_precision, self.cfg.input_format, self.cfg.prefix_end)

    def _report_skips(self):
        """One line per input with skipped records (kinds, first file:line), then the --max_skip_fraction ceiling.
        A domain whose every record was skipped drops out of the domain table: the train line says so."""
        td, md = self.train_data, self.meta_data
        line = td.skips.line()
        if td.lost_domains:
            line += ("; domain(s) left without a usable record, so without a weight: "
                     + ", ".join(f"{d} ({n} records skipped)" for d, n in td.lost_domains.items()))
        if td.skips.total:
            print(line)
        for skips in (md.skips, md.dropped):
            if skips.total:
                print(skips.line())
        td.skips.check(self.cfg.max_skip_fraction)
        md.skips.check(self.cfg.max_skip_fraction)

    def announce(self):
        """Where the PRM runs and in which precision regime, before it is loaded."""
        dev = self.cfg.device
        extra = f" ({torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)})" if dev == "cuda" else ""
        print(f"PRM: device {dev}{extra}, precision {self.cfg.precision} ({REGIMES[self.cfg.precision]})")

    def _adapt_backbone(self):
        cfg, backbone = self.cfg, self.prm.backbone
        if cfg.gradient_checkpointing:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, lora_dropout=0.0,
                              target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)")
            # Adapters are injected in place; the base weights stay those of --prm and are frozen.
            self.peft = get_peft_model(backbone, lora)
            self.prm.backbone = self.peft.base_model.model

    def _loader(self, ds, encoder, batch_size, start, seed):
        return DataLoader(ds, batch_size=batch_size, sampler=InfiniteSampler(len(ds), seed, start),
                          collate_fn=_collate(ds, encoder), num_workers=self.cfg.num_workers)

    def weight_summary(self) -> tuple[dict[str, float], dict[str, dict]]:
        """The weight per domain: learned (domain), or the mean of its instances' weights (instance table or net);
        and for instance weights each domain's {mean, std, n} ({} for domain weights)."""
        if self.cfg.reweight == "domain":
            return self.weights.as_dict(), {}
        by_domain = per_domain(self.weights.as_dict(), self.domain_of)
        return {d: s["mean"] for d, s in by_domain.items()}, by_domain

    def build(self):
        cfg = self.cfg
        enc = self.prm.encoder
        train_ds = _Samples(self.train_data.samples, self.train_data.labels, self.rows, self.train_data.instances)
        meta_ds = _Samples(self.meta_data.samples, self.meta_data.labels)
        upper_steps = self.start // cfg.unroll_steps
        lower_loader = self._loader(train_ds, enc, cfg.train_batch_size,
                                    self.start * cfg.train_batch_size, cfg.seed)
        if cfg.meta_packing not in ("tree", "none"):
            raise ValueError(f"--meta_packing must be tree or none; got {cfg.meta_packing!r}")
        tree = None
        # stepwise already scores a record in one row; use_cache, which the tree needs, is off under checkpointing
        if (cfg.meta_packing == "tree" and cfg.prm_kind == "scalar" and cfg.input_format == "paper"
                and not cfg.gradient_checkpointing and cfg.strategy == "default"):
            tree = TreeScorer(self.prm)
        meta_loader = self._loader(meta_ds, None if tree else enc, cfg.meta_batch_size,
                                   upper_steps * cfg.meta_batch_size, cfg.seed + 1)
        lower_opt = torch.optim.Adam(self.prm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     eps=cfg.adam_eps, decoupled_weight_decay=True)
        sched = torch.optim.lr_scheduler.StepLR(lower_opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
        upper_opt = torch.optim.Adam(self.weights.parameters(), lr=cfg.meta_lr, weight_decay=cfg.meta_weight_decay,
                                     eps=cfg.adam_eps, decoupled_weight_decay=True)
        log_step = cfg.log_every if cfg.logger != "none" else -1
        # The hypergradient method belongs on the lower problem's Config (betty reads it from there).
        lower_cfg = Config(type=cfg.hypergradient, unroll_steps=cfg.unroll_steps, darts_alpha=cfg.darts_alpha,
                           sama_adam_alpha=cfg.darts_alpha, neumann_iterations=cfg.neumann_iterations,
                           cg_iterations=1, gradient_accumulation=cfg.gradient_accumulation, log_step=log_step)
        upper_cfg = Config(type="darts", first_order=True, log_step=log_step)
        self.lower = LowerPRM("prm", lower_cfg, self.prm, lower_opt, sched, extra_config=_Cfg(cfg, lower_loader))
        problems, deps = [self.lower], {"u2l": {}, "l2u": {}}
        self.upper = None
        if not cfg.baseline:
            self.upper = UpperWeights("weights", upper_cfg, self.weights, upper_opt,
                                      extra_config=_Cfg(cfg, meta_loader, tree))
            problems.append(self.upper)
            deps = {"u2l": {self.upper: [self.lower]}, "l2u": {self.lower: [self.upper]}}
        strategy = cfg.strategy
        if strategy in ("distributed", "zero", "fsdp") and not torch.cuda.is_available():
            raise RuntimeError(f"--strategy {strategy} needs CUDA GPUs (betty pins one GPU per rank); "
                               "launch with torchrun, see reweighting/README.md")
        if strategy == "default" and str(self.prm.device) == "cpu":
            strategy = "cpu"
        engine_cfg = EngineConfig(train_iters=cfg.iterations, valid_step=10 ** 12, logger_type=cfg.logger,
                                  strategy=strategy)
        self.engine = DreamEngine(problems, engine_cfg, deps, self)
        return self

    def _write_weights(self, where: Path) -> None:
        """domain_weights.json (for instance weights: each domain's mean), and for instance weights
        instance_weights.json: every instance id with its domain, question id (the record's `id`) and weight."""
        write_json(where / "domain_weights.json", self.weight_summary()[0])
        if self.cfg.reweight != "domain":
            question = dict(zip(self.train_data.instances, self.train_data.ids))
            write_json(where / "instance_weights.json",
                       [{"instance": i, "domain": self.domain_of[i], "question": question[i], "weight": w}
                        for i, w in self.weights.as_dict().items()])

    # ---- checkpoints -------------------------------------------------------------------------------
    def checkpoint_dirs(self) -> list[Path]:
        ck = self.out / "checkpoints"
        return sorted(ck.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if ck.is_dir() else []

    def save(self, it: int) -> Path:
        from peft import get_peft_model_state_dict
        """A checkpoint is written to a temporary directory and renamed: a kill never leaves half of one."""
        ck = self.out / "checkpoints"
        tmp, final = ck / f".tmp-step-{it}", ck / f"step-{it}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        merged = copy.deepcopy(self.peft).merge_and_unload() if self.peft is not None else None
        self.prm.save_pretrained(tmp / "prm", merged)  # with LoRA: a plain PRM with the adapters merged
        self._write_weights(tmp)
        torch.save({
            "iteration": it, "weights": self.weights.state_dict(),
            "lower_opt": self.lower.optimizer.state_dict(), "lower_sched": self.lower.scheduler.state_dict(),
            "upper_opt": self.upper.optimizer.state_dict() if self.upper else None,
            "weights_seen": getattr(self.weights, "seen", None),
            "lora": get_peft_model_state_dict(self.peft) if self.peft is not None else None,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "config": asdict(self.cfg),
        }, tmp / "state.pt")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in self.checkpoint_dirs()[:-max(1, self.cfg.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self) -> int:
        """Load the newest checkpoint (PRM, weights, optimisers, data position); return its iteration."""
        from peft import set_peft_model_state_dict

        dirs = self.checkpoint_dirs()
        if not dirs:
            return 0
        ck = dirs[-1]
        state = torch.load(ck / "state.pt", map_location="cpu", weights_only=False)
        if self.peft is not None:  # base weights are --prm's; only adapters (and the scalar head) were trained
            set_peft_model_state_dict(self.peft, state["lora"])
            if isinstance(self.prm, PRM):
                self.prm.head.load_state_dict(torch.load(ck / "prm" / HEAD_FILE, map_location=self.prm.device))
        else:
            self.prm.load_state_dict(self._load_prm(str(ck / "prm"), str(self.prm.device)).state_dict())
        self.weights.load_state_dict(state["weights"])
        if state.get("weights_seen") is not None:
            self.weights.seen = dict(state["weights_seen"])
        self.start = state["iteration"]
        self._resume_state = state
        return self.start

    def _restore_optimisers(self):
        state = getattr(self, "_resume_state", None)
        if state is None:
            return
        self.lower.optimizer.load_state_dict(state["lower_opt"])
        self.lower.scheduler.load_state_dict(state["lower_sched"])
        if self.upper is not None and state["upper_opt"] is not None:
            self.upper.optimizer.load_state_dict(state["upper_opt"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        # betty schedules the upper step from the lower problem's local step count.
        self.lower._count = self.start
        if self.upper is not None:
            self.upper._count = self.start // self.cfg.unroll_steps

    # ---- logging -----------------------------------------------------------------------------------
    def after_step(self, it: int):
        cfg = self.cfg
        if not self.engine.is_rank_zero():  # under torchrun only rank 0 logs and saves
            return
        upper = self.upper.last.get("loss") if self.upper is not None else None
        self._check_finite(it, self.lower.last["plain_loss"], upper)
        if it % cfg.log_every == 0 or it == cfg.iterations:
            weights, by_domain = self.weight_summary()
            row = {"iteration": it, "lower_loss": self.lower.last["plain_loss"],
                   "weighted_lower_loss": self.lower.last["loss"], "upper_loss": upper,
                   "lr": self.lower.scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - self.t0, 3),
                   "weights": weights}
            if by_domain:
                row["instance_weights_by_domain"] = by_domain
            with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            self.bar.set_postfix(lower=f"{row['lower_loss']:.4f}",
                                 upper="-" if upper is None else f"{upper:.4f}")
        if it % cfg.save_every == 0 or it == cfg.iterations:
            self.save(it)
        self.bar.update(1)

    def _check_finite(self, it: int, lower, upper) -> None:
        """A diverged run stops at the first non-finite loss or weight: a NaN never reaches the log, the
        checkpoints or the weights a user reads (the last checkpoint stays, for --resume with other settings)."""
        values = {"lower loss": float(lower), **({"upper loss": float(upper)} if upper is not None else {})}
        # one tensor check per step; the weights are named (instances by id) only when one has gone bad
        if not all(torch.isfinite(p).all() for p in self.weights.parameters()):
            values.update({f"weight of {d}": w for d, w in self.weights.as_dict().items()})
            if isinstance(self.weights, InstanceNet):  # its weights of past instances may all still be finite
                values["instance net parameters"] = math.nan
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise DataError(f"{self.out}: iteration {it}: {', '.join(f'{k} is {v}' for k, v in bad.items())}: "
                            "training diverged; try a lower --lr / --meta_lr or --precision fp32")

    def run(self) -> dict:
        from tqdm.auto import tqdm

        if self.cfg.resume:  # without --resume, an earlier run in --out was refused when it was locked
            self.resume()
        self.build()
        self._restore_optimisers()
        self._trim_log()
        self.bar = tqdm(total=self.cfg.iterations, initial=self.start, desc="bi-level" if self.upper else "baseline",
                        unit="it")
        self.engine.run()
        self.bar.close()
        return self.finish()

    def _trim_log(self):
        """Drop log rows past the checkpoint we resumed from: they will be written again."""
        log = self.out / "log.jsonl"
        if log.exists():
            rows = [ln for ln in log.read_text().splitlines() if ln.strip()]
            keep = []
            for ln in rows:
                try:
                    if json.loads(ln)["iteration"] <= self.start:
                        keep.append(ln)
                except (json.JSONDecodeError, KeyError):
                    break  # a torn last line from a kill
            atomic_write_text(log, "".join(k + "\n" for k in keep))

    def training_record(self, weights: dict) -> dict:
        """What the model card says of the training (training.json in the PRM directory)."""
        cfg, last = self.cfg, {}
        log = self.out / "log.jsonl"
        if log.is_file():
            rows = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
            last = {k: rows[-1].get(k) for k in ("iteration", "lower_loss", "upper_loss")} if rows else {}
        return {"name": f"{'vanilla' if cfg.baseline else 'DreamPRM'} PRM ({self.out.name})",
                "base_model": cfg.prm, "prm_kind": cfg.prm_kind, "input_format": cfg.input_format,
                "reweight": cfg.reweight, "baseline": cfg.baseline, "iterations": cfg.iterations,
                "lr": cfg.lr, "meta_lr": cfg.meta_lr, "unroll_steps": cfg.unroll_steps,
                "train": {"file": cfg.train, "samples": len(self.train_data.samples),
                          "by_domain": dict(sorted(Counter(self.train_data.domains).items())),
                          "skipped": self.train_data.skipped},
                "meta": {"file": cfg.meta, "records": len(self.meta_data.samples), "skipped": self.meta_data.skipped},
                "weights": weights, "final": last}

    def finish(self) -> dict:
        from .plots import plot_weights, plot_weights_over_time

        if not self.engine.is_rank_zero():
            return {}
        final, tmp = self.out / "prm", self.out / ".tmp-prm"
        weights, by_domain = self.weight_summary()
        shutil.rmtree(tmp, ignore_errors=True)  # copied beside it, then swapped in: a kill never leaves half a PRM
        shutil.copytree(self.checkpoint_dirs()[-1] / "prm", tmp)
        write_json(tmp / TRAINING_FILE, self.training_record(weights))
        write_card(tmp)  # the model card travels with the PRM
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self._write_weights(self.out)
        figs = self.cfg.resolve(self.cfg.figs)
        tag = "baseline_" if self.cfg.baseline else ""
        if by_domain:
            plot_weights(weights, figs / f"{tag}domain_weights.png", f"Mean {self.cfg.reweight} weight per domain (± std)",
                         {d: st["std"] for d, st in by_domain.items()})
        else:
            plot_weights(weights, figs / f"{tag}domain_weights.png")
        plot_weights_over_time(self.out / "log.jsonl", figs / f"{tag}domain_weights_over_iterations.png")
        summary = {"iterations": self.cfg.iterations, "domains": self.domains, "weights": weights,
                   "train_samples": len(self.train_data.samples), "train_skipped": self.train_data.skipped,
                   "train_domains_lost": self.train_data.lost_domains,
                   "meta_records": len(self.meta_data.samples), "meta_skipped": self.meta_data.skipped,
                   "skipped": {"train": self.train_data.skips.as_dict(), "meta": self.meta_data.skips.as_dict(),
                               "meta_rule": self.meta_data.dropped.as_dict()},
                   "meta_without_steps": self.meta_data.without_steps,
                   "meta_steps_by_label": self.meta_data.steps_by_label, "meta_warning": self.meta_data.warning(),
                   "prm": str(final), "prm_kind": self.cfg.prm_kind, "reweight": self.cfg.reweight}
        if by_domain:
            summary["instance_weights_by_domain"] = by_domain
        write_json(self.out / "summary.json", summary)
        return summary


def train(cfg: ReweightConfig) -> dict:
    return Reweighter(cfg).run()
