"""Chat web server (spec section 11, ORIG `chat_web`): FastAPI + uvicorn, one model replica per worker.

Endpoints: `GET /` (the single-page UI, `web/ui.html`), `POST /chat/completions` (JSON
`{"messages": [{"role", "content"}], "temperature"?, "top_k"?, "max_tokens"?}`, answered as
Server-Sent Events `data: {"token": "...", "worker": id}` ... `data: {"done": true}`), `GET /health`,
`GET /stats`. Workers (one per GPU, else one on the CPU) wait in an asyncio queue; a request takes
one, generates in a thread and gives it back when generation ends. Input limits are checked before
anything runs and answered with a 4xx JSON `{"error": ...}`. Text is streamed UTF-8-safely. The only
tool is the Engine's calculator, a restricted AST evaluator: no request can run code here.
Binds 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from nanochat_core.chat_cli import load_chat_model, reply_pieces
from nanochat_core.engine import Engine

log = logging.getLogger("nanochat_core.chat_web")

UI_FILE = Path(__file__).resolve().parent / "web" / "ui.html"
MAX_MESSAGES = 500
MAX_MESSAGE_CHARS = 8_000
MAX_TOTAL_CHARS = 32_000
MAX_BODY_BYTES = 1 << 20
TEMPERATURE_RANGE = (0.0, 2.0)
TOP_K_RANGE = (1, 200)
MAX_TOKENS_RANGE = (1, 4096)
ROLES = ("user", "assistant")
DEFAULTS = {"temperature": 0.8, "top_k": 50, "max_tokens": 512}


class RequestError(ValueError):
    """A request the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]
    temperature: float
    top_k: int
    max_tokens: int


def _number(data: dict, key: str, kind: type, lo: float, hi: float) -> Any:
    value = data.get(key)
    if value is None:
        return kind(DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise RequestError(f"'{key}' must be {'an integer' if kind is int else 'a number'}")
    if not lo <= value <= hi:
        raise RequestError(f"'{key}' must be between {lo} and {hi}, got {value}")
    return kind(value)


def parse_chat_request(body: bytes) -> ChatRequest:
    """Validate a `/chat/completions` body; raises RequestError naming the first problem."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(f"request body larger than {MAX_BODY_BYTES} bytes", 413)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"invalid JSON: {err}") from None
    except RecursionError:
        raise RequestError("invalid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestError("the body must be a JSON object")
    unknown = sorted(set(data) - {"messages", "temperature", "top_k", "max_tokens"})
    if unknown:
        raise RequestError(f"unknown field '{unknown[0]}'")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    if len(messages) > MAX_MESSAGES:
        raise RequestError(f"too many messages: {len(messages)} > {MAX_MESSAGES}")
    total = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"}:
            raise RequestError(f"message {i} must be an object with 'role' and 'content'")
        if m.get("role") not in ROLES:
            raise RequestError(f"message {i} has role {m.get('role')!r}; roles must be 'user' or 'assistant'")
        content = m.get("content")
        if not isinstance(content, str) or not content:
            raise RequestError(f"message {i} content must be a non-empty string")
        if len(content) > MAX_MESSAGE_CHARS:
            raise RequestError(f"message {i} is too long: {len(content)} > {MAX_MESSAGE_CHARS} characters")
        total += len(content)
    if total > MAX_TOTAL_CHARS:
        raise RequestError(f"conversation too long: {total} > {MAX_TOTAL_CHARS} characters")
    if messages[-1]["role"] != "user":
        raise RequestError("the last message must be from the user")
    return ChatRequest(
        messages=[{"role": m["role"], "content": m["content"]} for m in messages],
        temperature=_number(data, "temperature", float, *TEMPERATURE_RANGE),
        top_k=_number(data, "top_k", int, *TOP_K_RANGE),
        max_tokens=_number(data, "max_tokens", int, *MAX_TOKENS_RANGE),
    )


def prompt_tokens(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """`<|bos|>`, each message wrapped in its role's delimiters, then `<|assistant_start|>`."""
    special = tokenizer.encode_special
    ids = [tokenizer.bos_token_id]
    for m in messages:
        role = m["role"]
        ids += [special(f"<|{role}_start|>"), *tokenizer.encode(m["content"]), special(f"<|{role}_end|>")]
    return ids + [special("<|assistant_start|>")]


@dataclass
class Worker:
    """One model replica on one device."""

    id: int
    engine: Engine
    device: str
    busy: bool = False
    requests: int = 0
    tokens: int = 0


@dataclass
class WorkerPool:
    """Workers waiting in an asyncio queue (created lazily inside the server's event loop)."""

    workers: list[Worker]
    _queue: asyncio.Queue | None = field(default=None, repr=False)

    def queue(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = asyncio.Queue()
            for w in self.workers:
                self._queue.put_nowait(w)
        return self._queue

    async def acquire(self) -> Worker:
        worker = await self.queue().get()
        worker.busy = True
        return worker

    def release(self, worker: Worker) -> None:
        worker.busy = False
        self.queue().put_nowait(worker)

    @property
    def available(self) -> int:
        return sum(not w.busy for w in self.workers)


def build_pool(artifacts_dir: str | Path, *, source: str = "sft", workers: int = 0, device: str = "auto") -> WorkerPool:
    """One replica per GPU (or `workers` of them), else `workers` (default 1) replicas on the CPU."""
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise ValueError("--device cuda requested but CUDA is not available")
    if use_cuda:
        count = workers or torch.cuda.device_count()
        devices = [f"cuda:{i % torch.cuda.device_count()}" for i in range(count)]
    else:
        devices = ["cpu"] * max(1, workers)
    pool = []
    for i, dev in enumerate(devices):
        model, tok, meta = load_chat_model(artifacts_dir, source, dev)
        pool.append(Worker(i, Engine(model, tok), dev))
        log.info("worker %d: %s checkpoint step %s on %s", i, source, meta.get("step"), dev)
    return WorkerPool(pool)


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def create_app(pool: WorkerPool, *, seed: int | None = None, ui_file: Path = UI_FILE) -> FastAPI:
    """The FastAPI app over a worker pool. `seed` fixes sampling (tests); None = a random seed per request."""
    app = FastAPI(title="nanobench chat", docs_url=None, redoc_url=None, openapi_url=None)
    started = time.time()
    counters = {"requests": 0, "rejected": 0, "tokens": 0}
    seeds = random.SystemRandom()

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(ui_file.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "ready": bool(pool.workers), "workers": len(pool.workers), "available": pool.available}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - started, 3),
            "requests": counters["requests"],
            "rejected": counters["rejected"],
            "tokens": counters["tokens"],
            "workers": [
                {"id": w.id, "device": w.device, "busy": w.busy, "requests": w.requests, "tokens": w.tokens} for w in pool.workers
            ],
        }

    @app.post("/chat/completions")
    async def chat_completions(request: Request):
        declared = request.headers.get("content-length")
        try:
            if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise RequestError(f"request body larger than {MAX_BODY_BYTES} bytes", 413)
            chat = parse_chat_request(await _read_body(request))
            engine = pool.workers[0].engine
            prompt = prompt_tokens(engine.tokenizer, chat.messages)
            if len(prompt) >= engine.max_positions:
                raise RequestError(f"conversation too long for the model: {len(prompt)} tokens, at most {engine.max_positions - 1}")
        except RequestError as err:
            counters["rejected"] += 1
            return JSONResponse({"error": str(err)}, status_code=err.status)
        counters["requests"] += 1
        request_seed = seed if seed is not None else seeds.randrange(2**31)
        log.info("chat request: %d messages, last user message: %r", len(chat.messages), chat.messages[-1]["content"][:200])
        return StreamingResponse(
            _stream(pool, chat, prompt, request_seed, counters),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


async def _read_body(request: Request) -> bytes:
    """The request body, read no further than MAX_BODY_BYTES (a chunked upload declares no length)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(f"request body larger than {MAX_BODY_BYTES} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _stream(pool: WorkerPool, chat: ChatRequest, prompt: list[int], seed: int, counters: dict) -> AsyncIterator[str]:
    """Generate on a free worker in a thread; relay its text pieces as SSE lines."""
    worker = await pool.acquire()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        generated: list[int] = []
        try:
            for piece in reply_pieces(
                worker.engine, prompt, temperature=chat.temperature, top_k=chat.top_k, max_tokens=chat.max_tokens,
                seed=seed, generated=generated, should_stop=stop.is_set,
            ):
                loop.call_soon_threadsafe(queue.put_nowait, ("token", piece))
        except Exception as err:  # reported to the client as an SSE error line
            log.exception("generation failed")
            loop.call_soon_threadsafe(queue.put_nowait, ("error", f"{type(err).__name__}: {err}"))
        finally:
            worker.requests += 1
            worker.tokens += len(generated)
            counters["tokens"] += len(generated)
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            loop.call_soon_threadsafe(pool.release, worker)  # only once the model is free again

    loop.run_in_executor(None, produce)
    reply: list[str] = []
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                break
            if kind == "token":
                reply.append(value)
                yield _sse({"token": value, "worker": worker.id})
            else:
                yield _sse({"error": value, "worker": worker.id})
        yield _sse({"done": True})
        log.info("chat reply (worker %d): %r", worker.id, "".join(reply)[:200])
    finally:
        stop.set()  # the client went away or we finished: end generation early


def serve(run_dir: str | Path, *, source: str = "sft", host: str = "127.0.0.1", port: int = 8000, workers: int = 0, device: str = "auto") -> None:
    """Load the workers and run uvicorn until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    pool = build_pool(Path(run_dir) / "artifacts", source=source, workers=workers, device=device)
    log.info("serving %d worker(s) on http://%s:%d", len(pool.workers), host, port)
    uvicorn.run(create_app(pool), host=host, port=port, log_level="info")
