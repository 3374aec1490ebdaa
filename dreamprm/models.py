"""Loading the models and sampling from them: the one place a hub id or a local checkpoint is opened.

The real models are the defaults; a tiny checkpoint written by `python -m dreamprm.miniworld.tiny` takes exactly the
same path (`from_pretrained` on a directory instead of a hub id).
"""
from __future__ import annotations

from collections import Counter
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


def chat_template(image_slot: str) -> str:
    """A ChatML template (Qwen2's, InternVL's `internvl2_5` conversation) over string or image/text content;
    `image_slot` is what an image part renders as, expanded by the processor. Used by the tiny checkpoints and the
    InternVL converter (`dreamprm.convert`)."""
    return ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}"
            "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}" + image_slot +
            "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


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


def _encode(processor, tokenizer, batch: list[tuple]):
    if processor is tokenizer:  # text-only chat templates (Qwen2.5) want string content
        convs = [[{"role": "user", "content": text}] for _, text in batch]
        texts = tokenizer.apply_chat_template(convs, add_generation_prompt=True, tokenize=False)
        return tokenizer(texts, return_tensors="pt", padding=True)
    convs = [chat(text, image) for image, text in batch]
    return processor.apply_chat_template(convs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                         return_tensors="pt", processor_kwargs={"padding": True})


def _shared_prefill(model, inputs: dict, rows: torch.Tensor):
    """The prompt's keys and values computed once per distinct prompt, then copied to each of its rows.

    The last prompt token is left for `generate`, which needs at least one uncached token. Models with
    multimodal RoPE (Qwen2-VL) keep position state across calls, so they are not given a cache this way.
    """
    if "image_grid_thw" in inputs:
        return None
    head = {k: v[:, :-1] if k in ("input_ids", "attention_mask") else v for k, v in inputs.items()}
    cache = model(**head, use_cache=True).past_key_values
    cache.reorder_cache(rows)
    return cache


@torch.inference_mode()
def generate(model, processor, prompts: Sequence[tuple], n: int = 1, temperature: float = 1.0,
             max_new_tokens: int = 1024, batch_size: int = 8, desc: str = "generate",
             progress: bool = True) -> list[list[str]]:
    """Sample `n` responses for each (image or None, text) prompt; returns texts in prompt order.

    Identical prompts (the rollouts of one MC node) are encoded and prefilled once: under sampling their
    rows share the prompt's keys and values; under greedy decoding (temperature 0, deterministic) one decode
    serves them all. Distinct prompts are sorted by length so a batch carries little padding.
    A processor that is a bare tokenizer (the text-only judge) works too.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    greedy = temperature <= 0
    sampling = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_p=1.0,
                                                         top_k=0)
    slot: dict = {}  # (image object, text) -> index of the distinct prompt
    which = [slot.setdefault((id(im) if im is not None else None, text), len(slot)) for im, text in prompts]
    distinct = [None] * len(slot)
    for pr, u in zip(prompts, which):
        distinct[u] = pr
    wanted = Counter(which)
    rows_of = [1 if greedy else wanted[u] * n for u in range(len(distinct))]
    pools: list[list[str]] = [[] for _ in distinct]
    order = sorted(range(len(distinct)), key=lambda u: len(distinct[u][1]))
    with tqdm(total=len(prompts), desc=desc, disable=not progress, unit="prompt") as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            inputs = _encode(processor, tokenizer, [distinct[u] for u in idx]).to(model.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            counts = torch.tensor([rows_of[u] for u in idx], device=model.device)
            rows = torch.arange(len(idx), device=model.device).repeat_interleave(counts)
            cache = _shared_prefill(model, inputs, rows) if len(rows) > len(idx) else None
            if cache is not None:
                call = dict(input_ids=inputs["input_ids"][rows], attention_mask=inputs["attention_mask"][rows],
                            past_key_values=cache)
            else:  # no sharing: transformers repeats each prompt for its rows itself
                call = dict(inputs)
                if len(rows) > len(idx):
                    if len(set(counts.tolist())) > 1:
                        raise NotImplementedError("this model needs the same number of samples for every prompt")
                    call["num_return_sequences"] = int(counts[0])
            gen = model.generate(**call, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 suppress_tokens=_special_ids(tokenizer) or None, **sampling)
            texts = tokenizer.batch_decode(gen[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            k = 0
            for u in idx:
                pools[u] = texts[k:k + rows_of[u]]
                k += rows_of[u]
            bar.update(sum(wanted[u] for u in idx))
    out, taken = [], Counter()
    for u in which:
        if greedy:
            out.append(pools[u] * n)
        else:
            out.append(pools[u][taken[u] * n:(taken[u] + 1) * n])
            taken[u] += 1
    return out
