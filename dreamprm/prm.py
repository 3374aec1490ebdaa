"""The process reward model: a Qwen2-VL backbone with the paper's scalar head (SPEC stage 7).

score = sigmoid(Linear(logits over the vocabulary at a read position -> 1)).

Everything the PRM scores is a `Sample`: an image, a question and the step prefixes of ONE response
(prefix k+1 extends prefix k). A training node is a sample with one prefix; a meta record or a BoN
candidate is a sample with all its prefixes. Two input formats, used alike by training and scoring:

- `paper` (default, the paper's): one sequence per prefix; the user turn holds the image and
  `question + "\\n\\n" + prefix`, the assistant header is appended, the score is read at the last token.
- `stepwise`: one sequence per sample; the user turn holds the image and the question, the assistant turn
  holds the longest prefix, and a score is read at the last token of every prefix. One forward pass scores
  all prefixes; a prefix's score only sees tokens up to its end (causal attention).

Speed without changing a number: each distinct image in a batch goes through the vision tower once (a
meta record's prefixes or a question's N candidates share it); only read positions are projected onto the
vocabulary; sequences are left-padded so the paper format reads position -1.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .io import load_image
from .models import PRM_BASE, chat, load_vlm

HEAD_FILE = "prm_head.pt"
CONFIG_FILE = "prm_config.json"  # the input format the PRM was trained with: scoring must use the same
PRM_MAX_SIDE = 512  # the paper resizes PRM images so the longest side is at most 512 px
FORMATS = ("paper", "stepwise")


@dataclass
class Sample:
    image: object  # a path, a PIL image, or None
    question: str
    prefixes: list[str]  # nested step prefixes of one response, shortest first


def paper_text(question: str, prefix: str) -> str:
    return question + "\n\n" + prefix if prefix else question


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

    def __init__(self, processor, fmt: str = "paper", max_side: int = PRM_MAX_SIDE, image_cache: int = 256):
        if fmt not in FORMATS:
            raise ValueError(f"PRM input format must be one of {FORMATS}; got {fmt!r}")
        self.processor, self.tok, self.fmt, self.max_side = processor, processor.tokenizer, fmt, max_side
        self.image_token = processor.image_token
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

    def __call__(self, samples: list[Sample]) -> PRMBatch:
        keys, pixels, grids = {}, [], []
        texts, reads, image_of_row = [], [], []  # reads: per row, character offsets to read at
        for s in samples:
            if not s.prefixes:
                raise ValueError(f"sample without step prefixes: {s.question[:60]!r}")
            img = -1
            n_tok = 0
            if s.image is not None:
                key = s.image if isinstance(s.image, (str, Path)) else id(s.image)
                if key not in keys:
                    pv, thw = self.image_inputs(s.image)
                    keys[key] = len(pixels)
                    pixels.append(pv)
                    grids.append(thw)
                img = keys[key]
                n_tok = int(grids[img].prod()) // self.merge
            if self.fmt == "paper":
                for p in s.prefixes:
                    texts.append(self.header(paper_text(s.question, p), img >= 0, n_tok))
                    reads.append([None])  # None: the last token
                    image_of_row.append(img)
            else:
                head = self.header(s.question, img >= 0, n_tok)
                full = s.prefixes[-1]
                for p in s.prefixes:
                    if not full.startswith(p):
                        raise ValueError("stepwise format needs nested prefixes of one response")
                texts.append(head + full)
                reads.append([len(head) + len(p) for p in s.prefixes])
                image_of_row.append(img)
        enc = self.tok(texts, padding=True, return_tensors="pt", return_offsets_mapping=self.fmt == "stepwise",
                       add_special_tokens=False)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        rows, cols = [], []
        for r, ends in enumerate(reads):
            if ends == [None]:
                rows.append(r)
                cols.append(ids.shape[1] - 1)
                continue
            starts = enc["offset_mapping"][r, :, 0].tolist()
            valid = mask[r].tolist()
            for end in ends:  # the last real token that starts before the prefix's end
                c = max(i for i, (st, v) in enumerate(zip(starts, valid)) if v and st < end)
                rows.append(r)
                cols.append(c)
        image_id = self.tok.convert_tokens_to_ids(self.image_token)
        inputs = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": (ids == image_id).long()}
        image_inputs = {}
        if pixels:
            row_grids = [grids[i] for i in image_of_row if i >= 0]
            inputs["image_grid_thw"] = torch.cat(row_grids)
            image_inputs = {"pixel_values": torch.cat(pixels), "image_grid_thw": torch.cat(grids)}
        return PRMBatch(inputs, torch.tensor(rows), torch.tensor(cols), image_inputs, image_of_row)


def saved_format(name: str | Path) -> str | None:
    """The input format recorded in a trained PRM directory, None for a base model or hub id."""
    f = Path(name) / CONFIG_FILE
    return json.loads(f.read_text()).get("input_format") if f.is_file() else None


class PRM(nn.Module):
    def __init__(self, backbone, processor, fmt: str = "paper"):
        super().__init__()
        self.backbone = backbone
        self.processor = processor
        self.encoder = PRMEncoder(processor, fmt)
        vocab = backbone.config.get_text_config().vocab_size
        # The head stays fp32 whatever the backbone's dtype: it is tiny and sums over the whole vocabulary.
        self.head = nn.Linear(vocab, 1, device=backbone.device, dtype=torch.float32)

    @classmethod
    def from_pretrained(cls, name: str = PRM_BASE, device: str | None = None, precision: str = "auto",
                        fmt: str | None = None) -> "PRM":
        """A trained PRM directory (backbone + head), or a base VLM whose head starts freshly initialised.

        `fmt` None: the format the PRM was trained with (its prm_config.json), else `paper`."""
        fmt = fmt or saved_format(name) or "paper"
        backbone, processor = load_vlm(name, device, precision)
        prm = cls(backbone, processor, fmt)
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
        (out / CONFIG_FILE).write_text(json.dumps({"input_format": self.fmt}) + "\n")

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def fmt(self) -> str:
        return self.encoder.fmt

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
