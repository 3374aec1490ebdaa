"""The generative PRM kind (DreamPRM-1.5, VisualPRM): the backbone's own `+` / `-` tokens are the verdict.

The input is one multi-turn conversation per response: a system turn asking for `+` or `-`, a first user turn
with the image, the question and step 1, one further user turn per step, and after each user turn an
assistant turn holding the single label token. A step's score is read at the token just before its label
(the last token of the assistant header, whose logits predict the label):

    score = P(+) / (P(+) + P(-))      (softmax over the two label logits)

Causal attention lets one forward pass over the whole conversation score every step: step k's read position
sees nothing after step k. `one_pass_equals_per_prefix` in tests checks this against one pass per prefix.

Pieces between label tokens are tokenized on their own and the label is inserted as its token id, so a
step's tokens and read position never depend on the label or on what follows (a BPE merge across the
boundary would otherwise move them). Both backbone families the repo knows work unchanged (transformers-native
Qwen2-VL and InternVL, loaded by `models.load_vlm`): the processor expands the image placeholder of the first
piece, and right padding keeps every real token at the position it has unbatched.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .export import IMAGE, SYSTEM_PROMPT, first_turn, step_text
from .io import load_image
from .prm import CONFIG_FILE, PRM_MAX_SIDE, Sample, saved_config, scored_text

LABELS = ("+", "-")
FORMAT = "conversation"  # the input format a generative PRM records (scalar PRMs: paper / stepwise)
_SLOT = "\x00label\x00"  # stands for an assistant turn's content while the template is rendered


@dataclass
class Chat:
    """One response as the generative PRM reads it: `users[k]` are the user turns before assistant turn k
    (one per step in our rows; the 1.5 meta rows put the question and step 1 in two), `labels[k]` that turn's
    verdict (True = `+`), read at every assistant turn. The image goes with the first user turn."""
    image: object
    users: list[list[str]]
    labels: list[bool]
    system: str = SYSTEM_PROMPT


def steps_chat(question: str, steps: list[str], image=None, labels: list[bool] | None = None,
               system: str = SYSTEM_PROMPT) -> Chat:
    """The chat of a question and its step texts, as `MC/export_conversations.py` writes it (`first_turn`)."""
    if not steps:
        raise ValueError(f"response without steps: {question[:60]!r}")
    labels = [True] * len(steps) if labels is None else list(labels)
    if len(labels) != len(steps):
        raise ValueError(f"{len(steps)} steps but {len(labels)} labels")
    return Chat(image, [[first_turn(question, steps[0])]] + [[s] for s in steps[1:]], labels, system)


def sample_chat(sample: Sample, system: str = SYSTEM_PROMPT) -> Chat:
    """A scalar PRM's `Sample` (question, nested step prefixes) as a chat with one assistant turn per prefix,
    so both kinds score the same candidates, meta records and step sets. Whitespace around the question and
    each step is dropped, as the scalar kind's default `prefix_end` does."""
    question, prefixes = scored_text(sample, "stripped")
    steps, prev = [], ""
    for p in prefixes:
        t = step_text(prev, p)
        if t is None and p:
            raise ValueError(f"step prefixes do not nest: {p[:60]!r}")
        steps.append(t or "")  # "" only for a meta record without step text: the question alone is the turn
        prev = p
    return steps_chat(question, steps, sample.image, system=system)


def messages(chat: Chat, labels: list[str] | None = None) -> list[dict]:
    """Chat-template messages: system, then per step its user turn(s) and an assistant turn holding `labels[k]`
    (default: a slot the encoder cuts at). An InternVL `<image>` placeholder in the first user turn marks where
    the image goes; without one it leads the turn."""
    labels = labels or [_SLOT] * len(chat.labels)
    out = [{"role": "system", "content": [{"type": "text", "text": chat.system}]}]
    for k, (users, label) in enumerate(zip(chat.users, labels)):
        for j, text in enumerate(users):
            content = [{"type": "text", "text": text}]
            if k == 0 and j == 0 and chat.image is not None:
                before, _, after = text.partition(IMAGE) if IMAGE in text else ("", "", text)
                content = ([{"type": "text", "text": before}] if before.strip() else []) + [{"type": "image"}] + \
                    [{"type": "text", "text": after.lstrip("\n")}]
            out.append({"role": "user", "content": content})
        out.append({"role": "assistant", "content": [{"type": "text", "text": label}]})
    return out


def conversation(question: str, steps: list[str], has_image: bool, labels: list[str] | None = None,
                 system: str = SYSTEM_PROMPT) -> list[dict]:
    """The chat-template messages of a question and its steps (`labels`: the assistant turns' text)."""
    return messages(steps_chat(question, steps, "image" if has_image else None, system=system), labels)


@dataclass
class Encoded:
    """One response's token ids, where each step's score is read, and its image inputs."""
    ids: list[int]
    reads: list[int]  # per step: the index whose logits predict its label token
    image_inputs: dict  # pixel_values (+ image_grid_thw for Qwen2-VL), empty without an image
    targets: list[int]  # per step: the label token its chat holds (the training target)


class GenerativeEncoder:
    def __init__(self, processor, max_side: int = PRM_MAX_SIDE):
        self.processor, self.tok, self.max_side = processor, processor.tokenizer, max_side
        self.label_ids = [self.tok.convert_tokens_to_ids(t) for t in LABELS]
        if any(i is None or i == self.tok.unk_token_id for i in self.label_ids):
            raise ValueError(f"the tokenizer has no single token for {LABELS}")
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0

    def pieces(self, chat: Chat) -> list[str]:
        """The rendered conversation cut at each label: piece k ends with step k's assistant header."""
        text = self.processor.apply_chat_template(messages(chat), tokenize=False)
        parts = text.split(_SLOT)
        if len(parts) != len(chat.labels) + 1:
            raise ValueError("the chat template did not render one assistant turn per step")
        return parts[:-1]  # what follows the last label is never read

    def encode_chat(self, chat: Chat) -> Encoded:
        """Token ids with every earlier verdict in context (teacher forcing in training; when scoring, chats
        hold `+` throughout, as the 1.5 scorer writes its conversations)."""
        pieces = self.pieces(chat)
        if chat.image is not None:
            im = load_image(chat.image, self.max_side) if isinstance(chat.image, (str, Path)) else chat.image
            out = self.processor(text=[pieces[0]], images=[im], return_tensors="pt")
            first = out["input_ids"][0].tolist()
            image_inputs = {k: v for k, v in out.items() if k in ("pixel_values", "image_grid_thw")}
        else:
            first, image_inputs = self.tok(pieces[0], add_special_tokens=False)["input_ids"], {}
        rest = self.tok(pieces[1:], add_special_tokens=False)["input_ids"] if len(pieces) > 1 else []
        targets = [self.label_ids[0 if ok else 1] for ok in chat.labels]
        ids, reads = list(first), [len(first) - 1]
        for target, piece in zip(targets, rest):
            ids += [target] + piece
            reads.append(len(ids) - 1)
        return Encoded(ids, reads, image_inputs, targets)

    def encode(self, image, question: str, steps: list[str], labels: list[bool] | None = None) -> Encoded:
        return self.encode_chat(steps_chat(question, steps, image, labels))

    def __call__(self, samples: list[Sample], system: str = SYSTEM_PROMPT) -> list[Encoded]:
        return [self.encode_chat(sample_chat(s, system)) for s in samples]


def _batch(encoded: list[Encoded], pad_id: int, image_token_id: int | None):
    """Right-padded inputs: every real token keeps its unbatched position, padding only follows it."""
    width = max(len(e.ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, e in enumerate(encoded):
        ids[r, :len(e.ids)] = torch.tensor(e.ids)
        mask[r, :len(e.ids)] = 1
    inputs = {"input_ids": ids, "attention_mask": mask}
    with_image = [e.image_inputs for e in encoded if e.image_inputs]
    for key in ("pixel_values", "image_grid_thw"):
        if with_image and key in with_image[0]:
            inputs[key] = torch.cat([x[key] for x in with_image])
    if image_token_id is not None and "image_grid_thw" in inputs:
        inputs["mm_token_type_ids"] = (ids == image_token_id).long()
    rows = torch.tensor([r for r, e in enumerate(encoded) for _ in e.reads])
    cols = torch.tensor([c for e in encoded for c in e.reads])
    return inputs, rows, cols


class GenerativePRM(torch.nn.Module):
    """A VLM scoring steps with its `+` / `-` tokens; `from_pretrained` takes a hub id or a local directory.

    It scores `Sample`s like the scalar `prm.PRM` (one score per step prefix, in order), so best-of-N, step-level
    evaluation and the trainer's upper level take either kind."""
    kind = "generative"
    fmt = FORMAT
    prefix_end = "stripped"

    def __init__(self, backbone, processor, max_side: int = PRM_MAX_SIDE, system: str = SYSTEM_PROMPT):
        super().__init__()
        self.backbone, self.processor, self.system = backbone, processor, system
        self.encoder = GenerativeEncoder(processor, max_side)
        token = getattr(processor, "image_token", None)
        self.image_token_id = processor.tokenizer.convert_tokens_to_ids(token) if token else None

    @classmethod
    def from_pretrained(cls, name: str, device: str | None = None, precision: str = "auto",
                        system: str | None = None) -> "GenerativePRM":
        """`system` None: the system prompt the PRM was trained with (its prm_config.json), else ours."""
        from .models import load_vlm

        backbone, processor = load_vlm(name, device, precision)
        return cls(backbone, processor, system=system or saved_config(name).get("system_prompt") or SYSTEM_PROMPT)

    def save_pretrained(self, out: str | Path, backbone=None) -> None:
        """Backbone, processor and prm_config.json (kind, format, system prompt); `backbone` overrides the saved one."""
        from .io import write_json

        out = Path(out)
        (backbone or self.backbone).save_pretrained(out)
        self.processor.save_pretrained(out)
        write_json(out / CONFIG_FILE, {"kind": self.kind, "input_format": self.fmt, "system_prompt": self.system})

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def encode(self, samples: list[Sample]) -> list[Encoded]:
        return self.encoder(samples, self.system)

    def label_logits(self, encoded: list[Encoded]) -> torch.Tensor:
        """Full-vocabulary logits at every read position of the encoded responses, in order: [steps, vocab]."""
        inputs, rows, cols = _batch(encoded, self.encoder.pad_id, self.image_token_id)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.backbone.dtype)
        hidden = self.backbone.model(**inputs).last_hidden_state
        return self.backbone.lm_head(hidden[rows.to(self.device), cols.to(self.device)]).float()

    def two_way(self, logits: torch.Tensor) -> torch.Tensor:
        """[steps, vocab] -> [steps, 2]: the logits of `+` and `-`."""
        return logits[:, self.encoder.label_ids]

    def step_scores(self, encoded: list[Encoded]) -> torch.Tensor:
        """P(+) / (P(+) + P(-)) per step of the encoded responses, in order."""
        return self.two_way(self.label_logits(encoded)).softmax(-1)[:, 0]

    def forward(self, encoded: list[Encoded]) -> torch.Tensor:
        return self.step_scores(encoded)

    def score(self, samples: list[Sample]) -> torch.Tensor:
        """One score per step prefix of the samples, in order (as `prm.PRM.score`)."""
        return self.step_scores(self.encode(samples))

    def lm_loss(self, encoded: list[Encoded], labels: list[list[bool]] | None = None,
                logits: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over the vocabulary on each step's label token (the 1.5 lower loss), per response.
        `labels` None: the verdicts the encoded chats hold; `logits`: `label_logits(encoded)` if already computed."""
        logits = self.label_logits(encoded) if logits is None else logits
        plus, minus = self.encoder.label_ids
        if labels is None:
            target = torch.tensor([t for e in encoded for t in e.targets])
        else:
            target = torch.tensor([plus if ok else minus for row in labels for ok in row])
        per_step = F.cross_entropy(logits, target.to(logits.device), reduction="none")
        sizes = [len(e.reads) for e in encoded]
        return torch.stack([part.mean() for part in per_step.split(sizes)])


# --- the 1.5 upper loss ----------------------------------------------------------------------------------

CHAIN_AGGREGATIONS = ("mean", "max", "min", "log_mean")
LOSS_TARGETS = ("plus", "both")


def chain_scores(p: torch.Tensor, sizes: list[int], func: str = "mean") -> torch.Tensor:
    """One score per chain from its steps' probabilities (`sizes[i]` steps for chain i). `log_mean` is the
    geometric mean exp(mean log p), which stays in [0, 1] like the others (the 1.5 release names it but
    implements only `mean`)."""
    if func not in CHAIN_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(CHAIN_AGGREGATIONS)}; got {func!r}")
    parts = p.split(sizes)
    if func == "mean":
        return torch.stack([x.mean() for x in parts])
    if func == "max":
        return torch.stack([x.max() for x in parts])
    if func == "min":
        return torch.stack([x.min() for x in parts])
    return torch.stack([x.clamp_min(1e-12).log().mean().exp() for x in parts])


def upper_loss(two_way_logits: torch.Tensor, sizes: list[int], correct: torch.Tensor, func: str = "mean",
               target: str = "both") -> torch.Tensor:
    """MSE of each meta chain's aggregated score against its label (DreamPRM-1.5's upper loss).

    `two_way_logits`: [steps, 2] logits of `+` and `-` at every step of the chains, in order. `plus`: the
    chain's aggregated P(+) against its true/false label. `both`: a wrong chain is scored on P(-) instead,
    and every chain's aggregate is compared with 1 (the release's `loss_target both`)."""
    if target not in LOSS_TARGETS:
        raise ValueError(f"loss target must be one of {', '.join(LOSS_TARGETS)}; got {target!r}")
    p = two_way_logits.float().softmax(-1)
    correct = correct.to(p.device).float()
    if target == "plus":
        return F.mse_loss(chain_scores(p[:, 0], sizes, func), correct)
    step_correct = correct.repeat_interleave(torch.tensor(sizes, device=p.device))
    p_label = torch.where(step_correct > 0.5, p[:, 0], p[:, 1])
    return F.mse_loss(chain_scores(p_label, sizes, func), torch.ones_like(correct))
