"""Loading the models and sampling from them: the one place a hub id or a local checkpoint is opened.

The real models are the defaults; a tiny checkpoint written by `python -m dreamprm.tiny` takes exactly the
same path (`from_pretrained` on a directory instead of a hub id).
"""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

POLICY = "OpenGVLab/InternVL2_5-8B-MPO-hf"  # transformers-native copy of InternVL-2.5-8B-MPO
PRM_BASE = "Qwen/Qwen2-VL-2B-Instruct"
JUDGE = "Qwen/Qwen2.5-7B-Instruct"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def pick_device(device: str | None = None) -> torch.device:
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """'auto' is bf16 on a GPU and fp32 on a CPU (bf16 matmuls are slow on most CPUs)."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of auto, {', '.join(PRECISIONS)}; got {precision!r}")
    return PRECISIONS[precision]


def load_vlm(name: str, device: str | None = None, precision: str = "auto"):
    """A vision-language model and its processor (policy or PRM backbone), tokenizer padding on the left.

    Left padding puts every sequence's real last token at position -1: generation continues from there and
    the PRM reads its score there.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dev = pick_device(device)
    processor = AutoProcessor.from_pretrained(name)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(name, dtype=pick_dtype(precision, dev)).to(dev)
    return model.eval(), processor


def load_judge(name: str = JUDGE, device: str | None = None, precision: str = "auto"):
    """The text-only LLM judge and its tokenizer, padding on the left."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    tokenizer = AutoTokenizer.from_pretrained(name, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(name, dtype=pick_dtype(precision, dev)).to(dev)
    return model.eval(), tokenizer


def chat(text: str, image=None) -> list[dict]:
    """One user turn: the image (if any) first, then the text, as the paper's prompts place it."""
    content = ([{"type": "image", "image": image}] if image is not None else []) + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


def _special_ids(tokenizer) -> list[int]:
    """Image and video placeholder tokens: a sampled one would corrupt the next forward pass."""
    names = [getattr(tokenizer, a, None) for a in ("image_token", "video_token", "start_image_token",
                                                    "end_image_token", "context_image_token",
                                                    "vision_start_token", "vision_end_token")]
    ids = {tokenizer.convert_tokens_to_ids(t) for t in names if isinstance(t, str)}
    return sorted(i for i in ids if i is not None and i != tokenizer.unk_token_id)


@torch.inference_mode()
def generate(model, processor, prompts: Sequence[tuple], n: int = 1, temperature: float = 1.0,
             max_new_tokens: int = 1024, batch_size: int = 8, desc: str = "generate",
             progress: bool = True) -> list[list[str]]:
    """Sample `n` responses for each (image or None, text) prompt; returns texts in prompt order.

    Prompts are sorted by length so a batch carries little padding; temperature 0 means greedy decoding.
    A processor that is a bare tokenizer (the text-only judge) works too.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i][1]))
    out: list[list[str]] = [[] for _ in prompts]
    sampling = dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0) if temperature > 0 else \
        dict(do_sample=False)
    # Greedy decoding is deterministic and transformers refuses num_return_sequences > 1 without sampling:
    # decode once per prompt and repeat the text n times.
    copies, n = (n, 1) if temperature <= 0 else (1, n)
    with tqdm(total=len(prompts), desc=desc, disable=not progress, unit="prompt") as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if processor is tokenizer:  # text-only chat templates (Qwen2.5) want string content
                convs = [[{"role": "user", "content": prompts[i][1]}] for i in idx]
                texts = tokenizer.apply_chat_template(convs, add_generation_prompt=True, tokenize=False)
                inputs = tokenizer(texts, return_tensors="pt", padding=True)
            else:
                convs = [chat(prompts[i][1], prompts[i][0]) for i in idx]
                inputs = processor.apply_chat_template(convs, add_generation_prompt=True, tokenize=True,
                                                       return_dict=True, return_tensors="pt",
                                                       processor_kwargs={"padding": True})
            inputs = inputs.to(model.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            gen = model.generate(**inputs, max_new_tokens=max_new_tokens, num_return_sequences=n,
                                 pad_token_id=tokenizer.pad_token_id, suppress_tokens=_special_ids(tokenizer)
                                 or None, **sampling)
            texts = tokenizer.batch_decode(gen[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] = texts[j * n:(j + 1) * n] * copies
            bar.update(len(idx))
    return out
