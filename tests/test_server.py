"""The PRM scoring server (dreamprm/server.py), through a real HTTP client (aiohttp, the client OpenRLHF's
executor posts with) against servers on 127.0.0.1: the `python -m dreamprm.server` command with a tiny PRM,
and, where timing must be controlled, the same app in this process over a scorer that waits to be released."""
import asyncio
import base64
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import aiohttp
import pytest
import torch
from PIL import Image

from conftest import ROOT
from dreamprm import PRMScorer, StepScores
from dreamprm.cli import parse_args
from dreamprm.prm import PRM
from dreamprm.server import Batcher, Overloaded, ServeConfig, make_app, prompt_question, query_response

PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
          "<|vision_start|><|image_pad|><|vision_end|>{q}<|im_end|>\n<|im_start|>assistant\n")


def response(k: int, n_steps: int = 3) -> str:
    return "".join(f"Step {s}: reasoning {s} of attempt {k}" + " and more" * (k % 5) + ".\n\n"
                   for s in range(1, n_steps + 1)) + f"Final answer: {k}"


@pytest.fixture(scope="module")
def site(tiny_models, tmp_path_factory):
    """A trained PRM directory and two images under one root."""
    root = tmp_path_factory.mktemp("site")
    torch.manual_seed(1)
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32", "paper")
    torch.nn.init.normal_(prm.head.weight, std=0.05)
    prm.save_pretrained(root / "prm")
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        Image.new("RGB", (48, 32), colour).save(root / f"img{i}.png")
    return root


@pytest.fixture(scope="module")
def api(site):
    return PRMScorer.from_pretrained(site / "prm", "cpu", "fp32")


def start(site, *extra):
    """`python -m dreamprm.server` on a free port; returns (process, base URL) once it listens."""
    cmd = [sys.executable, "-m", "dreamprm.server", "--path", str(site), "--prm", "prm", "--gpu", "cpu",
           "--precision", "fp32", "--port", "0", *extra]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if line.startswith("serving "):
            return proc, line.split(" on ")[1].split()[0]
    proc.kill()
    raise AssertionError("server did not start:\n" + "".join(lines))


@pytest.fixture(scope="module")
def server(site):
    proc, url = start(site, "--max_wait_ms", "100", "--max_body_mb", "0.05")
    yield url
    proc.terminate()
    proc.wait(timeout=60)


async def post(url, payload=None, data=None, headers=None):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        async with s.post(url, json=payload, data=data, headers=headers) as r:
            return r.status, await r.json(), r.headers


def run(coro):
    return asyncio.run(coro)


def test_openrlhf_shape_and_the_api_agree(server, site, api):
    qs = ["How many bars are red?", "What is the largest value?"]
    prompts = [PROMPT.format(q=q) for q in qs]
    resp = [response(1), response(2)]
    # as OpenRLHF's executor posts it: the decoded prompt + response, special tokens kept, one label each
    payload = {"query": [p + r + "<|im_end|>" for p, r in zip(prompts, resp)], "prompts": prompts,
               "labels": ["1", "2"], "images": ["img0.png", None]}
    status, out, _ = run(post(f"{server}/get_reward", payload))
    assert status == 200, out
    assert set(out) >= {"rewards", "scores", "extra_logs"} and out["rewards"] == out["scores"]
    want = api.score([(str(site / "img0.png"), qs[0], resp[0]), (None, qs[1], resp[1])])
    assert out["rewards"] == pytest.approx([s.score() for s in want], abs=1e-5)
    assert out["step_scores"][0] == pytest.approx(want[0].step_scores, abs=1e-5)
    assert out["extra_logs"]["num_steps"] == [3, 3]
    # the per-step endpoint, an image as a data: URL, another aggregation
    buf = io.BytesIO()
    Image.open(site / "img1.png").save(buf, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    items = [{"image": data_url, "question": qs[0], "response": resp[0]},
             {"image": None, "question": qs[1], "response": "no steps here"}]
    status, out, _ = run(post(f"{server}/score_steps", {"items": items, "aggregation": "min"}))
    assert status == 200, out
    want = api.score([(str(site / "img1.png"), qs[0], resp[0])])[0]
    got = out["results"][0]
    assert got["step_scores"] == pytest.approx(want.step_scores, abs=1e-5) and got["num_steps"] == 3
    assert got["score"] == pytest.approx(min(want.step_scores), abs=1e-5) and got["steps"] == want.steps
    assert out["results"][1] == {"steps": [], "step_scores": [], "score": None, "num_steps": 0}
    # OpenRLHF's executor, given several URLs, posts empty slices to all but the first
    status, out, _ = run(post(f"{server}/get_reward", {"query": [], "prompts": [], "labels": []}))
    assert status == 200 and out["rewards"] == [] and out["extra_logs"]["num_steps"] == []
    # a response without steps gets --stepless_reward (0) on /get_reward
    status, out, _ = run(post(f"{server}/get_reward", {"query": ["just 5"], "questions": ["2 + 3?"]}))
    assert status == 200 and out["rewards"] == [0.0] and out["extra_logs"]["num_steps"] == [0]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, site, api):
    q = "How many bars are red?"
    triples = [("img0.png", q, response(k)) for k in range(12)]
    want = [s.score() for s in api.score([(str(site / i), q, r) for i, q, r in triples])]

    async def many():
        async with aiohttp.ClientSession() as s:
            async def one(i, t):
                async with s.post(f"{server}/score_steps", json={"items": [dict(zip(("image", "question",
                                                                                     "response"), t))]}) as r:
                    return i, r.status, await r.json()
            async with s.get(f"{server}/health") as r:
                before = await r.json()
            res = await asyncio.gather(*(one(i, t) for i, t in enumerate(triples)))
            async with s.get(f"{server}/health") as r:
                after = await r.json()
            return before, res, after

    before, res, after = run(many())
    for i, status, out in res:
        assert status == 200, out
        assert out["results"][0]["score"] == pytest.approx(want[i], abs=1e-5)
    assert after["scored"] - before["scored"] == 12 and after["queued"] == 0 and after["status"] == "ok"
    assert after["rounds"] - before["rounds"] < 12  # requests that arrived together were scored together


def test_bad_requests_get_clear_answers(server):
    u = f"{server}/get_reward"
    status, out, _ = run(post(u, data=b'{"query": ["a", ', headers={"Content-Type": "application/json"}))
    assert status == 400 and out["error"].startswith("malformed JSON")
    status, out, _ = run(post(u, data=b'[1, 2]', headers={"Content-Type": "application/json"}))
    assert status == 400 and "JSON object" in out["error"]
    status, out, _ = run(post(u, {"query": ["Step 1: a"]}))
    assert status == 400 and "prompts" in out["error"]
    status, out, _ = run(post(u, {"query": ["p Step 1: a", "x"], "prompts": ["p ", "q "]}))
    assert status == 400 and out["error"].startswith("query 1: the query does not start with its prompt")
    status, out, _ = run(post(u, {"query": ["p Step 1: a"], "prompts": ["p "], "images": ["gone.png"]}))
    assert status == 400 and out["error"].startswith("query 0: image gone.png") and "not found" in out["error"]
    status, out, _ = run(post(u, {"query": ["p Step 1: a"], "prompts": ["p "], "images": ["../../etc/passwd"]}))
    assert status == 400 and "outside the server's image root" in out["error"]
    status, out, _ = run(post(u, {"query": ["p Step 1: a"], "prompts": ["p "], "images": ["http://x/a.png"]}))
    assert status == 400 and "not fetched" in out["error"]
    status, out, _ = run(post(u, {"query": ["p Step 1: a"], "prompts": ["p "], "images": ["data:image/png;base64,@@"]}))
    assert status == 400 and "base64" in out["error"]
    status, out, _ = run(post(f"{server}/score_steps", {"items": [{"question": "q"}]}))
    assert status == 400 and out["error"] == "item 0: missing response (needs question, response and optionally image)"
    status, out, _ = run(post(f"{server}/score_steps", {"items": [], "aggregation": "median"}))
    assert status == 400 and "aggregation must be one of" in out["error"]
    big = {"query": ["p " + "Step 1: " + "x" * 60_000], "prompts": ["p "]}  # over --max_body_mb 0.05
    status, out, _ = run(post(u, big))
    assert status == 413 and "over the limit" in out["error"]
    # chunked, without a Content-Length: cut off while streaming
    async def chunked():
        async def gen():
            for _ in range(20):
                yield b" " * 5000
        async with aiohttp.ClientSession() as s:
            async with s.post(u, data=gen(), headers={"Content-Type": "application/json"}) as r:
                return r.status, await r.json()
    status, out = run(chunked())
    assert status == 413 and "over the limit" in out["error"]
    # and the server is still well
    status, out, _ = run(post(u, {"query": ["p Step 1: a.\nFinal answer: 1"], "prompts": ["p "]}))
    assert status == 200 and len(out["rewards"]) == 1


def test_prompt_and_query_parsing():
    p = PROMPT.format(q="How many?")
    assert prompt_question(p) == "How many?"
    assert prompt_question("plain question") == "plain question"
    assert query_response(p + "Step 1: x.<|im_end|><|endoftext|>", p, "q") == "Step 1: x."
    with pytest.raises(ValueError, match="does not start"):
        query_response("other", p, "query 3")


class Gate:
    """A scorer that blocks until released: the queue's state is then known exactly."""
    prm = type("P", (), {"kind": "scalar", "fmt": "paper", "eval": lambda self: self})()

    def __init__(self):
        self.release, self.calls = threading.Event(), []

    def score(self, triples):
        self.calls.append(len(triples))
        self.release.wait(30)
        return [StepScores(["Step 1: a"], [0.75]) for _ in triples]


def test_batcher_bounds_its_queue_and_drains_on_stop():
    gate = Gate()
    b = Batcher(gate, max_batch=4, max_wait=0.0, max_queue=5)
    first = b.submit([1, 2, 3])
    while not gate.calls:
        time.sleep(0.01)
    second = b.submit([4, 5])  # 3 + 2 = 5 queued: room for no more
    with pytest.raises(Overloaded, match="5 responses queued, room for 0"):
        b.submit([6])
    gate.release.set()
    assert len(first.result(10)) == 3 and len(second.result(10)) == 2
    b.stop()
    assert b.scored == 5 and b.queued == 0
    with pytest.raises(Overloaded, match="stopping"):
        b.submit([7])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_overload_answer_over_http(tmp_path):
    """The same app in this process over the gate: the queue full -> 503 with Retry-After, then served."""
    import uvicorn

    gate = Gate()
    cfg = parse_args(ServeConfig, ["--path", str(tmp_path), "--max_queue", "3", "--max_wait_ms", "0"])
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(make_app(gate, cfg), host="127.0.0.1", port=port, log_level="error"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    while not srv.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}/score_steps"
    items = lambda k: {"items": [{"question": "q", "response": "Step 1: a"}] * k}  # noqa: E731

    async def scenario():
        async with aiohttp.ClientSession() as s:
            first = asyncio.create_task(s.post(url, json=items(2)))
            while not gate.calls:
                await asyncio.sleep(0.01)
            async with s.post(url, json=items(2)) as r:
                over = (r.status, await r.json(), r.headers.get("Retry-After"))
            async with s.post(url, json=items(4)) as r:
                too_big = (r.status, await r.json())
            gate.release.set()
            r = await first
            return over, too_big, (r.status, await r.json())

    try:
        over, too_big, ok = run(scenario())
    finally:
        gate.release.set()
        srv.should_exit = True
        t.join(30)
    assert over[0] == 503 and over[1]["error"].startswith("overloaded: 2 responses queued") and over[2] == "1"
    assert too_big[0] == 413 and "at most 3" in too_big[1]["error"]
    assert ok[0] == 200 and [r["score"] for r in ok[1]["results"]] == pytest.approx([0.75, 0.75])


def test_sigterm_answers_requests_in_flight_then_exits(site):
    proc, url = start(site, "--max_batch", "64")
    q = "How many bars are red?"
    items = [{"image": "img0.png", "question": f"{q} ({k})", "response": response(k, 6)} for k in range(48)]

    async def scenario():
        async with aiohttp.ClientSession() as s:
            task = asyncio.create_task(s.post(f"{url}/score_steps", json={"items": items}))
            for _ in range(500):  # until the request is being scored
                async with s.get(f"{url}/health") as r:
                    if (await r.json())["queued"]:
                        break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the request was never seen in flight")
            proc.send_signal(signal.SIGTERM)
            r = await task
            return r.status, await r.json()

    try:
        status, out = run(scenario())
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert status == 200 and len(out["results"]) == 48 and all(r["num_steps"] == 6 for r in out["results"])
    assert proc.returncode in (0, -signal.SIGTERM), proc.returncode  # uvicorn re-raises the signal it caught
    with pytest.raises(aiohttp.ClientConnectionError):
        run(post(f"{url}/health"))


def test_help():
    out = subprocess.run([sys.executable, "-m", "dreamprm.server", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "--max_queue" in out.stdout and "get_reward" in out.stdout


def test_an_openrlhf_prompt_from_the_processors_own_chat_template(tiny_models):
    """OpenRLHF builds a VLM prompt with the processor's chat template and decodes the query with its special
    tokens: the question and the response come back out of exactly that."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_models["prm"])
    msgs = [{"role": "system", "content": "Think step by step."},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many bars are red?"}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert "<|image_pad|>" in prompt or "<|vision_start|>" in prompt  # the image placeholder is in the prompt
    assert prompt_question(prompt) == "How many bars are red?"
    resp = "Step 1: Three bars are red.\nFinal answer: 3"
    assert query_response(prompt + resp + "<|im_end|>" + (proc.tokenizer.eos_token or ""), prompt, "q") == resp
