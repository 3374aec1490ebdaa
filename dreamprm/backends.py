"""Generation backends: one interface for sampling policy responses, whatever engine runs the model.

Rollouts (stage 2) and MC estimation (stage 4) build a list of `Request`s and call
`backend.generate(requests, n, temperature, max_new_tokens)`; they never touch the engine. Two backends ship:

- "transformers" (default): `models.load_vlm` + `models.generate`, batched and length-sorted. Runs anywhere,
  including the CPU with the tiny models.
- "vllm": a vLLM-class engine for GPU users (`pip install -r requirements-vllm.txt` in a separate CUDA
  environment; vLLM pins its own torch and has no CPU wheel). Not runnable, hence not tested, on a CPU
  machine: only the clear error when it is missing is.

Adding one (as the CPU mini world adds its simulated policy) is one entry in `BACKENDS`:

    BACKENDS["mine"] = lambda model, device=None, precision="auto", **kw: MyBackend(model, **kw)

Reproducibility: every request carries its own seed (derived from question id, sample index, node and
rollout index with `stable_seed`). vLLM honours it per request, so a rollout does not depend on which other
requests share its batch, and a killed-and-resumed or sharded run reproduces an uninterrupted one exactly.
transformers cannot seed rows of one batch separately; the backend seeds the torch generator once per call
from the seeds of the call's requests, which is deterministic for a fixed batch composition only. With it,
exact resume/shard reproducibility holds under greedy decoding (temperature 0); with sampling a resumed run
loses and duplicates nothing but draws different samples for the requests that were re-batched.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

from .io import DataError, load_image, where


@dataclass
class Request:
    text: str  # full user-turn prompt (structured_prompt or completion_prompt)
    image: str | None  # resolved image path, or None for a text-only question
    question: dict = field(default_factory=dict)  # the question record or tree node (id, ground_truth, ...)
    prefix: str = ""  # completion requests: the partial chain being continued ("" for fresh rollouts)
    seed: int = 0  # per-request seed (backends that can honour it per request do)


def stable_seed(*parts) -> int:
    """A seed from any JSON-able parts (ids, indices), identical across processes and machines.

    Python's hash() is salted per process, so it cannot make resumed or sharded runs agree.
    """
    digest = hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)  # fits every engine's seed type


class BackendUnavailable(DataError, RuntimeError):
    """The chosen backend cannot run in this environment (e.g. vLLM not installed): a one-line user error."""


def request_image(r: Request):
    """The request's image as RGB. The stages check every image when they read their input (`cfg.image_problem`)
    and skip the records of a bad one, so a backend may assume a loadable image; one that broke since is still
    a one-line error naming the image and the record that needs it, never a bare traceback."""
    try:
        return load_image(r.image)
    except DataError as e:
        raise DataError(f"{where(r.question, 'a request')}: {e} (the file changed after the stage checked it; "
                        "rerun with --resume)") from None


class Backend:
    """Interface: n completions per request, in request order."""

    def generate(self, requests: list[Request], n: int, temperature: float,
                 max_new_tokens: int) -> list[list[str]]:
        raise NotImplementedError


class TransformersBackend(Backend):
    def __init__(self, model: str, device: str | None = None, precision: str = "auto", batch_size: int = 8,
                 progress: bool = False):
        from .models import load_vlm

        self.model, self.processor = load_vlm(model, device, precision)
        self.batch_size = batch_size
        self.progress = progress

    def generate(self, requests, n, temperature, max_new_tokens):
        import torch

        from .models import generate

        images: dict[str, object] = {}  # one decode per image file per call (MC requests share images)
        for r in requests:
            if r.image is not None and r.image not in images:
                images[r.image] = request_image(r)
        # One generator seed per call: transformers cannot seed rows separately (see module docstring).
        torch.manual_seed(stable_seed(*[r.seed for r in requests]))
        prompts = [(images.get(r.image) if r.image is not None else None, r.text) for r in requests]
        return generate(self.model, self.processor, prompts, n=n, temperature=temperature,
                        max_new_tokens=max_new_tokens, batch_size=self.batch_size, progress=self.progress)


class VLLMBackend(Backend):
    """vLLM offline engine with one `SamplingParams(seed=...)` per request. Needs a CUDA machine."""

    def __init__(self, model: str, device: str | None = None, precision: str = "auto", batch_size: int = 256,
                 progress: bool = False, **engine_args):
        try:
            import vllm
        except ImportError as e:
            raise BackendUnavailable(
                "the 'vllm' backend needs vLLM, which is not installed here. Install it in a separate CUDA "
                "environment with `pip install -r requirements-vllm.txt` (it pins its own torch and has no CPU "
                "wheel), or use --backend transformers.") from e
        dtypes = {"auto": "auto", "bf16": "bfloat16", "fp32": "float32"}
        if precision not in dtypes:
            raise ValueError(f"precision must be one of {', '.join(dtypes)}; got {precision!r}")
        # `device` is not an engine argument: vLLM uses the GPUs that --gpu (CUDA_VISIBLE_DEVICES) leaves visible.
        self.vllm = vllm
        self.batch_size, self.progress = batch_size, progress
        self.llm = vllm.LLM(model=model, dtype=dtypes[precision], max_num_seqs=batch_size,
                            limit_mm_per_prompt={"image": 1}, **engine_args)

    def generate(self, requests, n, temperature, max_new_tokens):
        convs, images = [], {}
        for r in requests:
            if r.image and r.image not in images:
                images[r.image] = request_image(r)
            image = [{"type": "image_pil", "image_pil": images[r.image]}] if r.image else []
            convs.append([{"role": "user", "content": image + [{"type": "text", "text": r.text}]}])
        params = [self.vllm.SamplingParams(n=n, temperature=temperature, top_p=1.0, max_tokens=max_new_tokens,
                                           seed=r.seed) for r in requests]
        outs = self.llm.chat(convs, sampling_params=params, use_tqdm=self.progress)
        return [[c.text for c in o.outputs] for o in outs]


# name -> factory(model, device=None, precision="auto", [batch_size=...], **kwargs) -> Backend
def simulated_policy(model, **kwargs) -> Backend:
    """The CPU mini world's SIMULATED policy (`dreamprm.miniworld.simulated`), imported only when asked for: the
    core package never imports the mini world at load time."""
    from .miniworld.simulated import SimulatedPolicy
    return SimulatedPolicy(model, **kwargs)


BACKENDS: dict[str, Callable[..., Backend]] = {"transformers": TransformersBackend, "vllm": VLLMBackend,
                                               "simulated": simulated_policy}


def make_backend(name: str, model: str, device: str | None = None, precision: str = "auto",
                 batch_size: int | None = None, **kwargs) -> Backend:
    """The backend `name` for `model`; batch_size None keeps the backend's own default (8, vllm 256)."""
    if name not in BACKENDS:
        raise DataError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    return BACKENDS[name](model, device=device, precision=precision, **kwargs)
