"""Generation backends: one interface, a registry, per-request seeds, vLLM as an optional extra."""
import importlib.util

import pytest

from dreamprm import prompts
from dreamprm.backends import (BACKENDS, Backend, BackendUnavailable, Request, TransformersBackend, make_backend,
                               stable_seed)


@pytest.fixture(scope="module")
def policy(tiny_models):
    return TransformersBackend(str(tiny_models["policy"]), "cpu", "fp32", batch_size=2)


@pytest.fixture
def image_files(tmp_path, images):
    paths = []
    for i, im in enumerate(images[:3]):
        paths.append(str(tmp_path / f"{i}.png"))
        im.save(paths[-1])
    return paths


def test_stable_seed_is_deterministic_and_distinguishes_parts():
    assert stable_seed(42, "q1", 0) == stable_seed(42, "q1", 0)
    seeds = {stable_seed(42, q, s) for q in ("q1", "q2", 1, 2) for s in range(4)}
    assert len(seeds) == 16 and all(0 <= x < 2**31 for x in seeds)


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="unknown backend 'nope'; choose one of simulated, transformers, vllm"):
        make_backend("nope", "model")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_without_vllm_installed_gives_a_clear_error():
    with pytest.raises(BackendUnavailable, match=r"requirements-vllm\.txt.*--backend transformers"):
        make_backend("vllm", "OpenGVLab/InternVL2_5-8B-MPO-hf")


def test_a_new_backend_is_one_registry_entry(monkeypatch):
    class Echo(Backend):
        def __init__(self, model, **kw):
            self.model = model

        def generate(self, requests, n, temperature, max_new_tokens):
            return [[f"{self.model}:{r.seed}:{k}" for k in range(n)] for r in requests]

    monkeypatch.setitem(BACKENDS, "echo", Echo)
    b = make_backend("echo", "m", batch_size=3)
    assert b.generate([Request("t", None, seed=7)], 2, 1.0, 5) == [["m:7:0", "m:7:1"]]


def test_transformers_backend_greedy_does_not_depend_on_batching(policy, image_files):
    reqs = [Request(prompts.completion_prompt(f"Question {i}?", "Step 1: look." * (i + 1)), img, {"id": i}, seed=i)
            for i, img in enumerate(image_files)] + [Request("A question without an image?", None, {"id": 9})]
    together = policy.generate(reqs, 1, 0.0, 6)
    alone = [policy.generate([r], 1, 0.0, 6)[0] for r in reqs]
    assert together == alone and all(len(o) == 1 for o in together)
    # greedy with n > 1: n copies of the one greedy text (transformers itself refuses this combination)
    assert policy.generate(reqs[:1], 3, 0.0, 6) == [together[0] * 3]


def test_transformers_backend_sampling_is_seeded_per_call(policy, image_files):
    reqs = [Request(f"Describe image {i}.", img, seed=stable_seed(1, i)) for i, img in enumerate(image_files)]
    a = policy.generate(reqs, 2, 1.0, 6)
    b = policy.generate(reqs, 2, 1.0, 6)
    assert a == b and all(len(o) == 2 for o in a)


def test_an_image_broken_after_the_check_is_one_error_naming_the_record(policy, tmp_path):
    from dreamprm.io import DataError, Record

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    q = Record(id="q1")
    q.where = "data/q.jsonl:7"
    with pytest.raises(DataError, match=r"^data/q\.jsonl:7: .*broken\.png: unreadable image .*rerun with --resume"):
        policy.generate([Request("Describe it.", str(bad), q)], 1, 0.0, 4)


def test_unusable_backends_and_settings_are_user_errors():
    from dreamprm.cli import parse_args
    from dreamprm.io import DataError
    from dreamprm.rollout import RolloutArgs

    assert issubclass(BackendUnavailable, DataError)  # one line on the command line, not a traceback
    for argv, message in [(["--backend", "nope"], "--backend nope: unknown"), (["--precision", "fp8"], "--precision fp8"),
                          (["--temperature", "-1"], "--temperature"), (["--backend_args", "[1]"], "JSON object"),
                          (["--max_new_tokens", "0"], "--max_new_tokens must be at least 1")]:
        with pytest.raises(DataError, match=message):
            parse_args(RolloutArgs, argv).make_backend()


def test_the_vllm_engine_gets_the_tensor_parallel_size_and_other_engine_options(monkeypatch):
    """One engine over several GPUs of a node: --tensor_parallel_size and --backend_args reach vllm.LLM as they are
    (vLLM itself is not installed here: a recording stand-in takes its place)."""
    import sys
    import types

    from dreamprm.io import DataError
    from dreamprm.rollout import GenerationArgs

    seen = {}
    fake = types.ModuleType("vllm")
    fake.LLM = lambda **kwargs: seen.update(kwargs)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    args = GenerationArgs(backend="vllm", tensor_parallel_size=4, backend_args='{"gpu_memory_utilization": 0.8}',
                          batch_size=64, judge="none")
    args.check_generation()
    make_backend("vllm", "OpenGVLab/InternVL2_5-8B-MPO-hf", **args.backend_kwargs())
    assert seen["tensor_parallel_size"] == 4 and seen["gpu_memory_utilization"] == 0.8 and seen["max_num_seqs"] == 64
    with pytest.raises(DataError, match="vllm engine option"):
        GenerationArgs(backend="transformers", tensor_parallel_size=2).check_generation()
    with pytest.raises(DataError, match="tensor_parallel_size must be at least 1"):
        GenerationArgs(backend="vllm", tensor_parallel_size=0).check_generation()
