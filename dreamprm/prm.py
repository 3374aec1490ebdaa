"""The process reward model: a Qwen2-VL backbone with the paper's scalar head (SPEC stage 7).

score = sigmoid(Linear(logits over the vocabulary at a read position -> 1)).

Everything the PRM scores is a `Sample`: an image, a question and the step prefixes of ONE response
(prefix k+1 extends prefix k). A training node is a sample with one prefix; a meta record or a BoN
candidate is a sample with all its prefixes. Two input formats, used alike by training and scoring:

- `paper` (default, the paper's): one sequence per prefix; the user turn holds the image and
  `question + "\n\n" + prefix`, the assistant header is appended, the score is read at the last token.
- `stepwise`: one sequence per sample; the user turn holds the image and the question, the assistant turn
  holds the response, and a score is read at the last token of every prefix. One forward pass scores
  all prefixes; a prefix's score only sees tokens up to its end (causal attention).

Where a prefix ends and where its score is read is defined once, here (`scored_text`, `PRMEncoder.sequences`),
and used by training (lower and upper level) and by every scorer: the same response and step get the same
tokens whether the prefix came from a train record (with or without a separator after its last step), a meta
record or a BoN candidate. See `PREFIX_ENDS`.

Speed without changing a number: each distinct image in a batch goes through the vision tower once (a
meta record's prefixes or a question's N candidates share it); only read positions are projected onto the
vocabulary; sequences are left-padded so the paper format reads position -1.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .io import DataError, load_image, read_json
from .models import PRM_BASE, chat, load_vlm

HEAD_FILE = "prm_head.pt"
CONFIG_FILE = "prm_config.json"  # how the PRM read its input in training (format, prefix end): scoring reads it back
PRM_MAX_SIDE = 512  # the paper resizes PRM images so the longest side is at most 512 px
FORMATS = ("paper", "stepwise")
# `stripped` (default): the question and every prefix lose their surrounding whitespace, so a step's score is
# read at its own last token, never at a separator that one source writes and another does not (the released
# train data ends `add` at the step's text, our tree and the released split_step end it after "\n\n").
# `raw`: the text exactly as the record has it (the released code's behaviour).
PREFIX_ENDS = ("stripped", "raw")
# `scalar`: this module's PRM, a head on the vocabulary logits (DreamPRM); `generative`: the backbone's own
# `+` / `-` tokens in a multi-turn conversation (DreamPRM-1.5, VisualPRM; `dreamprm.generative`).
KINDS = ("scalar", "generative")


@dataclass
class Sample:
    image: object  # a path, a PIL image, or None
    question: str
    prefixes: list[str]  # nested step prefixes of one response, shortest first


def check_probabilities(scores: list[float], where: str, of: str = "", fix: str = "try --precision fp32") -> None:
    """A PRM's score is a sigmoid, in [0, 1]. Anything else (NaN from broken weights, an overflow in low
    precision) stops the caller here, naming `where` (and `of`: which response): written or returned, it
    would be picked."""
    for j, x in enumerate(scores, 1):
        if not (isinstance(x, (int, float)) and math.isfinite(x) and 0 <= x <= 1):
            raise DataError(f"{where}: the PRM scored step {j}{of} as {x} (not a number in [0, 1]); check the "
                            f"PRM's weights or {fix}")


def paper_text(question: str, prefix: str) -> str:
    return question + "\n\n" + prefix if prefix else question


def scored_text(sample: Sample, prefix_end: str = "stripped") -> tuple[str, list[str]]:
    """The question and the step prefixes exactly as the PRM sees them (see PREFIX_ENDS)."""
    if prefix_end == "raw":
        return sample.question, list(sample.prefixes)
    if prefix_end != "stripped":
        raise ValueError(f"prefix_end must be one of {PREFIX_ENDS}; got {prefix_end!r}")
    return sample.question.strip(), [p.strip() for p in sample.prefixes]


def step_segments(prefixes: list[str]) -> list[str]:
    """Nested prefixes -> the text each step adds (segment k = prefix k minus prefix k-1)."""
    out, prev = [], ""
    for p in prefixes:
        if not p.startswith(prev):
            raise ValueError("stepwise format needs nested prefixes of one response")
        out.append(p[len(prev):])
        prev = p
    return out


@dataclass
class PRMBatch:
    """Model inputs for a list of samples plus where to read the scores (one per prefix, in order)."""
    inputs: dict
    rows: torch.Tensor  # read positions: batch row ...
    cols: torch.Tensor  # ... and token index
    image_inputs: dict = field(default_factory=dict)  # pixel_values / image_grid_thw of the distinct images
    image_of_row: list[int] = field(default_factory=list)  # distinct-image index of each row, -1 for none

    def to(self, device) -> "PRMBatch":
        mv = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return PRMBatch(mv(self.inputs), self.rows.to(device), self.cols.to(device), mv(self.image_inputs),
                        self.image_of_row)


class PRMEncoder:
    """Turns samples into a `PRMBatch` (CPU work only, so it can run in DataLoader workers)."""

    def __init__(self, processor, fmt: str = "paper", max_side: int = PRM_MAX_SIDE, image_cache: int = 256,
                 prefix_end: str = "stripped"):
        if fmt not in FORMATS:
            raise ValueError(f"PRM input format must be one of {FORMATS}; got {fmt!r}")
        if prefix_end not in PREFIX_ENDS:
            raise ValueError(f"prefix_end must be one of {PREFIX_ENDS}; got {prefix_end!r}")
        self.processor, self.tok, self.fmt, self.max_side = processor, processor.tokenizer, fmt, max_side
        self.prefix_end = prefix_end
        self.image_token = processor.image_token
        self.image_id = self.tok.convert_tokens_to_ids(self.image_token)
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        self.merge = processor.image_processor.merge_size ** 2
        self._cache: dict = {}
        self._cache_size = image_cache

    def image_inputs(self, image):
        """(pixel_values, grid_thw) of an image, memoised by path: the loop revisits the same images."""
        key = image if isinstance(image, (str, Path)) else id(image)
        if key not in self._cache:
            im = load_image(image, self.max_side) if isinstance(image, (str, Path)) else image
            out = self.processor.image_processor(images=[im], return_tensors="pt")
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (out["pixel_values"], out["image_grid_thw"])
        return self._cache[key]

    def header(self, text: str, has_image: bool, n_image_tokens: int) -> str:
        """The chat template up to and including the assistant header, image placeholder expanded."""
        conv = chat(text, "image" if has_image else None)
        s = self.processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        return s.replace(self.image_token, self.image_token * n_image_tokens, 1) if has_image else s

    def sequences(self, samples: list[Sample], n_image_tokens: list[int]) -> list[list[list[int]]]:
        """Token ids of every prefix's own sequence, per sample; each prefix's score is read at its last token.

        `paper`: the chat template around question + "\n\n" + prefix, assistant header appended.
        `stepwise`: the template with the question, up to the assistant header, then the step segments, each
        tokenized on its own, so the tokens of a prefix never depend on what follows it (BPE merges
        punctuation with a following newline in Qwen2's tokenizer, which would otherwise move the read
        position of a step when the next one is present). Prefix k's sequence extends prefix k-1's.
        """
        texts, shape = [], []  # shape: per sample, how many strings it contributed
        for s, n_tok in zip(samples, n_image_tokens):
            if not s.prefixes:
                raise ValueError(f"sample without step prefixes: {s.question[:60]!r}")
            question, prefixes = scored_text(s, self.prefix_end)
            has = s.image is not None
            if self.fmt == "paper":
                texts += [self.header(paper_text(question, p), has, n_tok) for p in prefixes]
                shape.append(len(prefixes))
            else:
                texts += [self.header(question, has, n_tok), *step_segments(prefixes)]
                shape.append(len(prefixes) + 1)
        ids = self.tok(texts, add_special_tokens=False)["input_ids"] if texts else []
        out, k = [], 0
        for n in shape:
            part, k = ids[k:k + n], k + n
            if self.fmt == "paper":
                out.append(part)
            else:
                seqs, seq = [], list(part[0])
                for seg in part[1:]:
                    seq = seq + seg
                    seqs.append(seq)
                out.append(seqs)
        return out

    def __call__(self, samples: list[Sample]) -> PRMBatch:
        keys, pixels, grids, img_of_sample, n_toks = {}, [], [], [], []
        for s in samples:
            img, n_tok = -1, 0
            if s.image is not None:
                key = s.image if isinstance(s.image, (str, Path)) else id(s.image)
                if key not in keys:
                    pv, thw = self.image_inputs(s.image)
                    keys[key] = len(pixels)
                    pixels.append(pv)
                    grids.append(thw)
                img = keys[key]
                n_tok = int(grids[img].prod()) // self.merge
            img_of_sample.append(img)
            n_toks.append(n_tok)
        rows_ids, reads, image_of_row = [], [], []  # reads: per row, token indices to read at
        for img, seqs in zip(img_of_sample, self.sequences(samples, n_toks)):
            if self.fmt == "paper":
                rows_ids += seqs
                reads += [[len(q) - 1] for q in seqs]
                image_of_row += [img] * len(seqs)
            else:  # one row: the longest sequence holds every shorter one
                rows_ids.append(seqs[-1])
                reads.append([len(q) - 1 for q in seqs])
                image_of_row.append(img)
        width = max(len(r) for r in rows_ids)
        ids = torch.full((len(rows_ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows_ids), width), dtype=torch.long)
        rows, cols = [], []
        for r, (q, ends) in enumerate(zip(rows_ids, reads)):
            pad = width - len(q)  # left padding: the last real token sits at -1
            ids[r, pad:] = torch.tensor(q, dtype=torch.long)
            mask[r, pad:] = 1
            rows += [r] * len(ends)
            cols += [pad + e for e in ends]
        inputs = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": (ids == self.image_id).long()}
        image_inputs = {}
        if pixels:
            row_grids = [grids[i] for i in image_of_row if i >= 0]
            inputs["image_grid_thw"] = torch.cat(row_grids)
            image_inputs = {"pixel_values": torch.cat(pixels), "image_grid_thw": torch.cat(grids)}
        return PRMBatch(inputs, torch.tensor(rows), torch.tensor(cols), image_inputs, image_of_row)


def saved_config(name: str | Path) -> dict:
    """What a trained PRM directory records of how it reads its input ({} for a base model or hub id)."""
    f = Path(name) / CONFIG_FILE
    return read_json(f, "PRM config") if f.is_file() else {}


def saved_kind(name: str | Path) -> str | None:
    """The PRM kind recorded in a trained PRM directory; None for a base model, a hub id or a converted checkpoint."""
    return saved_config(name).get("kind", "scalar" if saved_config(name) else None)


def trained_location(name: str) -> str:
    """`name` itself, or for a hub id of a trained PRM (a repo holding prm_config.json, as a trained PRM directory
    pushed to the hub does) its local snapshot, so that its head and config load too. A base model's hub id, or
    any id while offline and not downloaded before, stays as it is."""
    if Path(name).exists() or name.count("/") != 1:
        return name
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        hf_hub_download(name, CONFIG_FILE)
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError):
        return name  # a base model (or nothing: from_pretrained then says so)
    return snapshot_download(name)


def load_prm(name: str, device: str | None = None, precision: str = "auto", kind: str | None = None,
             fmt: str | None = None):
    """A PRM of either kind, as training left it: `kind` None is the saved one (scalar when none is saved).
    `fmt` is the scalar kind's input format (None: the saved one); the generative kind has one format. `name`:
    a directory, or a hub id (a trained PRM's repo is fetched whole, `trained_location`)."""
    name = trained_location(name)
    kind = kind or saved_kind(name) or "scalar"
    if kind not in KINDS:
        raise ValueError(f"PRM kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if kind == "generative":
        from .generative import GenerativePRM

        return GenerativePRM.from_pretrained(name, device, precision)
    return PRM.from_pretrained(name, device, precision, fmt if fmt in FORMATS else None)


def saved_format(name: str | Path) -> str | None:
    """The input format recorded in a trained PRM directory, None for a base model or hub id."""
    return saved_config(name).get("input_format")


class PRM(nn.Module):
    kind = "scalar"

    def __init__(self, backbone, processor, fmt: str = "paper", prefix_end: str = "stripped"):
        super().__init__()
        self.backbone = backbone
        self.processor = processor
        self.encoder = PRMEncoder(processor, fmt, prefix_end=prefix_end)
        vocab = backbone.config.get_text_config().vocab_size
        # The head stays fp32 whatever the backbone's dtype: it is tiny and sums over the whole vocabulary.
        self.head = nn.Linear(vocab, 1, device=backbone.device, dtype=torch.float32)

    @classmethod
    def from_pretrained(cls, name: str = PRM_BASE, device: str | None = None, precision: str = "auto",
                        fmt: str | None = None, prefix_end: str | None = None) -> "PRM":
        """A trained PRM directory (backbone + head), or a base VLM whose head starts freshly initialised.

        `fmt` / `prefix_end` None: what the PRM was trained with (its prm_config.json), else the defaults."""
        saved = saved_config(name)
        fmt = fmt or saved.get("input_format") or "paper"
        # a PRM saved before prefix_end existed was trained on the text as written
        prefix_end = prefix_end or saved.get("prefix_end") or ("raw" if saved else "stripped")
        backbone, processor = load_vlm(name, device, precision)
        prm = cls(backbone, processor, fmt, prefix_end)
        head = Path(name) / HEAD_FILE
        if head.is_file():
            prm.head.load_state_dict(torch.load(head, map_location=backbone.device, weights_only=True))
        return prm

    def save_pretrained(self, out: str | Path, backbone=None) -> None:
        """Save backbone, processor and head; `backbone` overrides what is saved (e.g. LoRA merged)."""
        out = Path(out)
        (backbone or self.backbone).save_pretrained(out)
        self.processor.save_pretrained(out)
        torch.save(self.head.state_dict(), out / HEAD_FILE)
        (out / CONFIG_FILE).write_text(json.dumps({"kind": self.kind, "input_format": self.fmt,
                                                             "prefix_end": self.prefix_end}) + "\n")

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def fmt(self) -> str:
        return self.encoder.fmt

    @property
    def prefix_end(self) -> str:
        return self.encoder.prefix_end

    def forward(self, batch: PRMBatch) -> torch.Tensor:
        """One score in (0, 1) per prefix of the encoded samples, in order."""
        batch = batch.to(self.device)
        extra = {}
        if batch.image_inputs:
            inner = self.backbone.model
            feats = inner.get_image_features(batch.image_inputs["pixel_values"].to(self.backbone.dtype),
                                             batch.image_inputs["image_grid_thw"], return_dict=True)
            # Reuse each distinct image's features for every row that shows it.
            feats.pooler_output = tuple(feats.pooler_output[i] for i in batch.image_of_row if i >= 0)
            extra["mm_encoder_outputs"] = {"image": feats}
        hidden = self.backbone.model(**batch.inputs, **extra).last_hidden_state
        logits = self.backbone.lm_head(hidden[batch.rows, batch.cols])
        return torch.sigmoid(self.head(logits.float())).squeeze(-1)

    def score(self, samples: list[Sample]) -> torch.Tensor:
        return self(self.encoder(samples))
