"""The process reward model: a Qwen2-VL backbone with the paper's scalar head (SPEC stage 7).

score = sigmoid(Linear(logits over the vocabulary at the read position -> 1)). In the paper's input format
the user turn holds the image and `question + "\\n\\n" + step prefix`, the assistant header is appended,
and the score is read at the last token. Only the read position is projected onto the vocabulary
(`logits_to_keep`), which is most of the cost of a tiny model and a good part of a real one's.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .models import PRM_BASE, chat, load_vlm

HEAD_FILE = "prm_head.pt"
PRM_MAX_SIDE = 512  # the paper resizes PRM images so the longest side is at most 512 px


def paper_text(question: str, prefix: str) -> str:
    return question + "\n\n" + prefix


class PRM(nn.Module):
    def __init__(self, backbone, processor):
        super().__init__()
        self.backbone = backbone
        self.processor = processor
        vocab = backbone.config.get_text_config().vocab_size
        # The head stays fp32 whatever the backbone's dtype: it is tiny and sums over the whole vocabulary.
        self.head = nn.Linear(vocab, 1, device=backbone.device, dtype=torch.float32)

    @classmethod
    def from_pretrained(cls, name: str = PRM_BASE, device: str | None = None, precision: str = "auto") -> "PRM":
        """A trained PRM directory (backbone + head), or a base VLM whose head starts freshly initialised."""
        backbone, processor = load_vlm(name, device, precision)
        prm = cls(backbone, processor)
        head = Path(name) / HEAD_FILE
        if head.is_file():
            prm.head.load_state_dict(torch.load(head, map_location=backbone.device, weights_only=True))
        return prm

    def save_pretrained(self, out: str | Path) -> None:
        out = Path(out)
        self.backbone.save_pretrained(out)
        self.processor.save_pretrained(out)
        torch.save(self.head.state_dict(), out / HEAD_FILE)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def encode(self, items: list[tuple]) -> dict:
        """Paper-format model inputs for (image or None, question, prefix) items, left-padded as one batch."""
        convs = [chat(paper_text(q, p), im) for im, q, p in items]
        inputs = self.processor.apply_chat_template(convs, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt",
                                                    processor_kwargs={"padding": True})
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.backbone.dtype)
        return inputs

    def forward(self, **inputs) -> torch.Tensor:
        """Scores in (0, 1) read at each sequence's last token (inputs must be left-padded)."""
        logits = self.backbone(**inputs, logits_to_keep=1).logits[:, -1]
        return torch.sigmoid(self.head(logits.float())).squeeze(-1)

    def score(self, items: list[tuple]) -> torch.Tensor:
        return self(**self.encode(items))
