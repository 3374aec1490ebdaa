"""A PRM scoring server over HTTP for RL and search loops (FastAPI + uvicorn).

    python -m dreamprm.server --prm runs/reweighting/prm --port 5000 [--host 0.0.0.0] [--gpu 0]

Endpoints (JSON in, JSON out):

- `POST /get_reward`: OpenRLHF's remote reward model (`--reward.remote_url http://host:5000/get_reward`).
  Request `{"query": [...], "prompts": [...], "labels": [...]}` as OpenRLHF's executor posts it: each query is
  its prompt followed by the response. Answer `{"rewards": [...], "scores": [...], "extra_logs": {...}}`, one
  number per query: the aggregate of the response's step scores (`--aggregation`, the paper's mean of
  log-odds by default); a response without steps gets `--stepless_reward`. Two optional fields of our own:
  `images` (one per query: a path under --image_root, a `data:image/...;base64,` URL, or null), needed by a
  multimodal PRM since OpenRLHF does not send images to a remote RM; `questions` (one per query), the question
  as the PRM should read it (default: the prompt's last user turn, chat markup removed).
- `POST /score_steps`: `{"items": [{"image", "question", "response"}], "aggregation": "min"}` ->
  `{"results": [{"steps", "step_scores", "score", "num_steps"}]}`, every step's score (search, reranking).
- `GET /health`: status, the PRM, queued items, items scored.

Concurrent requests are batched: one scoring thread takes whatever is queued (up to --max_batch responses,
waiting at most --max_wait_ms for more) and scores it in one `PRMScorer.score` call, so candidates of one
question sent in separate requests still share one packed row. The queue is bounded: past --max_queue queued
responses a request is answered 503 with Retry-After (OpenRLHF's client retries), never queued without end. A
body over --max_body_mb is 413, malformed JSON or a bad field 400 naming the item, an image that cannot be
read 400 naming it. SIGTERM / Ctrl-C: no new connections, requests in flight are answered, then it exits.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import queue
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request  # module level: FastAPI resolves the handlers' annotations here
from fastapi.responses import JSONResponse

from .aggregation import AGGREGATIONS
from .api import DEFAULT_AGGREGATION, PRMScorer, as_triple
from .cli import StageArgs, parse_args
from .io import DataError, load_image
from .prm import PRM_MAX_SIDE


@dataclass
class ServeConfig(StageArgs):
    """Serve a trained PRM over HTTP: OpenRLHF's remote reward model shape (/get_reward), per-step scores
    (/score_steps), /health."""
    prm: str = field(default="runs/reweighting/prm", metadata={
        "help": "trained PRM directory (relative to --path) or hub id"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (0.0.0.0: every interface)"})
    port: int = field(default=5000, metadata={"help": "port (0: any free port; the chosen one is printed)"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), bf16 or fp32"})
    batch_size: int = field(default=8, metadata={"help": "responses per forward pass (as BoN/score.py)"})
    max_batch: int = field(default=64, metadata={"help": "responses scored together in one round, across requests"})
    max_wait_ms: float = field(default=5.0, metadata={
        "help": "how long a round waits for more requests to batch with once one has arrived"})
    max_queue: int = field(default=512, metadata={
        "help": "responses queued at most; past it a request is answered 503 (overloaded, retry later)"})
    max_body_mb: float = field(default=64.0, metadata={"help": "largest request body (MB); larger: 413"})
    aggregation: str = field(default=DEFAULT_AGGREGATION, metadata={
        "help": f"step-score aggregation of /get_reward's reward: {', '.join(AGGREGATIONS)}"})
    stepless_reward: float = field(default=0.0, metadata={
        "help": "/get_reward's reward of a response without steps (the PRM cannot score it)"})
    image_root: str | None = field(default=None, metadata={
        "help": "directory that image paths in requests are relative to and must stay inside (default: --path)"})
    image_cache: int = field(default=256, metadata={"help": "decoded images kept (a question's candidates share one)"})
    grace_seconds: float = field(default=30.0, metadata={"help": "on SIGTERM, how long requests in flight may take"})


class Overloaded(Exception):
    pass


class RequestError(ValueError):
    """A request the client must fix: answered 400 (or `status`) with the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Batcher:
    """One scoring thread over a bounded queue of jobs (a job: one request's triples and its future)."""

    def __init__(self, scorer: PRMScorer, max_batch: int, max_wait: float, max_queue: int):
        self.scorer, self.max_batch, self.max_wait, self.max_queue = scorer, max_batch, max_wait, max_queue
        self.jobs: queue.Queue = queue.Queue()
        self.queued = self.scored = self.rounds = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="prm-scorer", daemon=True)
        self.thread.start()

    def submit(self, triples: list) -> Future:
        fut: Future = Future()
        with self.lock:
            if self.stopping:
                raise Overloaded("the server is stopping")
            if self.queued + len(triples) > self.max_queue:
                raise Overloaded(f"{self.queued} responses queued, room for {self.max_queue - self.queued}; "
                                 "retry later")
            self.queued += len(triples)
        self.jobs.put((triples, fut))
        return fut

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        with self.lock:
            self.stopping = True
        self.jobs.put(None)
        self.thread.join()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            round_, n = [job], len(job[0])
            deadline = time.monotonic() + self.max_wait
            while n < self.max_batch:
                try:
                    nxt = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:  # stop after this round; nothing is queued behind the marker
                    self.jobs.put(None)
                    break
                round_.append(nxt)
                n += len(nxt[0])
            try:
                out = self.scorer.score([t for triples, _ in round_ for t in triples])
            except Exception as e:  # a broken model fails this round's requests, not the server
                for _, fut in round_:
                    fut.set_exception(e)
            else:
                k = 0
                for triples, fut in round_:
                    fut.set_result(out[k:k + len(triples)])
                    k += len(triples)
            with self.lock:
                self.queued -= n
                self.scored += n
                self.rounds += 1


class Images:
    """Request images -> PIL images, decoded once (an LRU), checked: inside the image root, readable, no URL."""

    def __init__(self, root: Path, size: int):
        self.root, self.size, self.cache = root.resolve(), size, OrderedDict()
        self.lock = threading.Lock()

    def get(self, ref, where: str):
        if ref is None or ref == "":
            return None
        if not isinstance(ref, str):
            raise RequestError(f"{where}: image must be a path, a data: URL or null, got {type(ref).__name__}")
        if re.match(r"https?://", ref):
            raise RequestError(f"{where}: image URLs are not fetched; send a path under the server's image root "
                               "or a data:image/...;base64, URL")
        with self.lock:
            if ref in self.cache:
                self.cache.move_to_end(ref)
                return self.cache[ref]
        im = self._decode(ref, where)
        with self.lock:
            self.cache[ref] = im
            while len(self.cache) > self.size:
                self.cache.popitem(last=False)
        return im

    def _decode(self, ref: str, where: str):
        if ref.startswith("data:"):
            try:
                data = base64.b64decode(ref.split(",", 1)[1], validate=True)
            except (IndexError, ValueError):
                raise RequestError(f"{where}: image is a data: URL without valid base64 data") from None
            src = io.BytesIO(data)
        else:
            path = (self.root / ref).resolve()
            if not path.is_relative_to(self.root):
                raise RequestError(f"{where}: image {ref} is outside the server's image root")
            src = path
        try:
            return load_image(src, PRM_MAX_SIDE)  # what the PRM's encoder does with a path
        except DataError as e:
            raise RequestError(f"{where}: {e}".replace(f"{src}: ", f"image {ref[:60]}: ")) from None


_TURN = re.compile(r"<\|im_start\|>user\n(.*?)(?:<\|im_end\|>|$)", re.S)
_MARKUP = re.compile(r"<\|vision_start\|>.*?<\|vision_end\|>|<\|image_pad\|>|<image>|<img>.*?</img>|<\|[a-z_]+\|>", re.S)
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end|>")


def prompt_question(prompt: str) -> str:
    """The question in an OpenRLHF prompt: the last user turn of a ChatML prompt (Qwen2-VL, InternVL), image
    placeholders and special tokens removed; any other prompt as it is."""
    turns = _TURN.findall(prompt)
    return _MARKUP.sub("", turns[-1] if turns else prompt).strip()


def query_response(query: str, prompt: str, where: str) -> str:
    """The response in an OpenRLHF query (prompt + response, decoded with special tokens): what follows the
    prompt, end-of-turn tokens removed."""
    if not query.startswith(prompt):
        raise RequestError(f"{where}: the query does not start with its prompt (OpenRLHF sends prompt + response)")
    response = query[len(prompt):]
    while True:
        stripped = response.rstrip()
        for tok in _END_TOKENS:
            stripped = stripped.removesuffix(tok)
        if stripped == response:
            return response
        response = stripped


def _list(data: dict, key: str, n: int | None, required: bool = True) -> list | None:
    v = data.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, list):
        raise RequestError(f"field {key!r} must be a list" + ("" if required else " or absent"))
    if n is not None and len(v) != n:
        raise RequestError(f"field {key!r} has {len(v)} entries, query has {n}")
    return v


def reward_triples(data: dict, images: Images) -> list:
    """/get_reward's body -> (image, question, response) triples."""
    queries = _list(data, "query", None)
    n = len(queries)
    prompts = _list(data, "prompts", n, required=False)
    questions = _list(data, "questions", n, required=False)
    refs = _list(data, "images", n, required=False)
    if prompts is None and questions is None:
        raise RequestError("send 'prompts' (OpenRLHF does) or 'questions' with 'query'")
    out = []
    for i, q in enumerate(queries):
        where = f"query {i}"
        if not isinstance(q, str) or (prompts and not isinstance(prompts[i], str)):
            raise RequestError(f"{where}: query and prompt must be strings")
        response = query_response(q, prompts[i], where) if prompts else q
        question = questions[i] if questions else prompt_question(prompts[i])
        out.append(as_triple((images.get(refs[i] if refs else None, where), question, response), where))
    return out


def step_triples(data: dict, images: Images) -> list:
    """/score_steps's body -> triples."""
    items = _list(data, "items", None)
    out = []
    for i, it in enumerate(items):
        where = f"item {i}"
        if not isinstance(it, dict):
            raise RequestError(f"{where}: must be an object with question, response and optionally image")
        _, question, resp = as_triple({k: v for k, v in it.items() if k != "image"}, where)  # image: ours to read
        out.append((images.get(it.get("image"), where), question, resp))
    return out


def make_app(scorer: PRMScorer, cfg: ServeConfig):
    """The FastAPI app over `scorer`; the batcher starts and stops with the app (lifespan)."""
    from contextlib import asynccontextmanager

    images = Images(cfg.resolve(cfg.image_root or "."), cfg.image_cache)
    limit = int(cfg.max_body_mb * 1e6)
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app):
        state["batcher"] = Batcher(scorer, cfg.max_batch, cfg.max_wait_ms / 1000, cfg.max_queue)
        yield
        await asyncio.to_thread(state["batcher"].stop)  # requests in flight have been answered by now

    app = FastAPI(title="DreamPRM scoring server", lifespan=lifespan)

    def error(status: int, message: str, **headers) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def body(request: Request) -> dict:
        """The JSON body, read at most `limit` bytes far."""
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > limit:
            raise RequestError(f"request body of {int(size)} bytes is over the limit of {limit}", 413)
        chunks, n = [], 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise RequestError(f"request body is over the limit of {limit} bytes", 413)
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(f"malformed JSON: {e}") from None
        if not isinstance(data, dict):
            raise RequestError("the body must be a JSON object")
        return data

    async def scored(request: Request, parse, answer) -> JSONResponse:
        try:
            data = await body(request)
            triples = await asyncio.to_thread(parse, data, images)  # decoding images is not the event loop's job
            if len(triples) > cfg.max_queue:
                raise RequestError(f"{len(triples)} responses in one request; at most {cfg.max_queue}", 413)
            fut = state["batcher"].submit(triples)
        except RequestError as e:
            return error(e.status, str(e))
        except DataError as e:
            return error(400, str(e))
        except Overloaded as e:
            return error(503, f"overloaded: {e}", **{"Retry-After": "1"})
        try:
            out = await asyncio.wrap_future(fut)
        except Exception as e:  # noqa: BLE001  the model failed: the client hears why
            return error(500, f"scoring failed: {' '.join(str(e).split())}")
        try:
            return JSONResponse(answer(data, out))
        except RequestError as e:
            return error(e.status, str(e))

    def reward_answer(data: dict, out: list) -> dict:
        rewards = [cfg.stepless_reward if (r := s.score(cfg.aggregation)) is None else r for s in out]  # scores are checked
        return {"rewards": rewards, "scores": rewards, "step_scores": [s.step_scores for s in out],
                "extra_logs": {"num_steps": [len(s.step_scores) for s in out],
                               "min_step_score": [min(s.step_scores, default=cfg.stepless_reward) for s in out]}}

    def steps_answer(data: dict, out: list) -> dict:
        how = data.get("aggregation", DEFAULT_AGGREGATION)
        if how not in AGGREGATIONS:
            raise RequestError(f"aggregation must be one of {', '.join(AGGREGATIONS)}; got {how!r}")
        return {"aggregation": how, "results": [{"steps": s.steps, "step_scores": s.step_scores,
                                                 "score": s.score(how), "num_steps": len(s.step_scores)}
                                                for s in out]}

    @app.post("/get_reward")
    async def get_reward(request: Request):
        return await scored(request, reward_triples, reward_answer)

    @app.post("/score_steps")
    async def score_steps(request: Request):
        return await scored(request, step_triples, steps_answer)

    @app.get("/health")
    async def health():
        b = state.get("batcher")
        prm = scorer.prm
        return {"status": "stopping" if b is None or b.stopping else "ok", "prm": cfg.prm, "kind": prm.kind,
                "input_format": getattr(prm, "fmt", None), "aggregation": cfg.aggregation,
                "queued": b.queued if b else 0, "max_queue": cfg.max_queue, "scored": b.scored if b else 0,
                "rounds": b.rounds if b else 0}

    return app


def serve(cfg: ServeConfig) -> None:
    import uvicorn

    from .bon import prm_location

    if cfg.aggregation not in AGGREGATIONS:
        raise DataError(f"--aggregation must be one of {', '.join(AGGREGATIONS)}; got {cfg.aggregation!r}")
    for name in ("batch_size", "max_batch", "max_queue", "image_cache"):
        if getattr(cfg, name) < 1:
            raise DataError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    cfg.announce("PRM", cfg.precision)
    scorer = PRMScorer.from_pretrained(prm_location(cfg), cfg.device, cfg.precision, cfg.batch_size)
    config = uvicorn.Config(make_app(scorer, cfg), host=cfg.host, port=cfg.port, log_level="warning",
                            timeout_graceful_shutdown=cfg.grace_seconds)
    server = uvicorn.Server(config)

    async def run():  # print the bound address (port 0 = a free one) once listening, for scripts and tests
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            host, port = server.servers[0].sockets[0].getsockname()[:2]
            print(f"serving {cfg.prm} on http://{host}:{port} (POST /get_reward, POST /score_steps, GET /health)",
                  flush=True)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    serve(parse_args(ServeConfig))
