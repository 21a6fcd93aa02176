"""Chat web server (spec section 11, ORIG `chat_web`): FastAPI + uvicorn, one model replica per worker.

Endpoints: `GET /` (the single-page UI, `web/ui.html`), `POST /chat/completions` (JSON
`{"messages": [{"role", "content"}], "temperature"?, "top_k"?, "max_tokens"?}`, answered as
Server-Sent Events `data: {"token": "...", "worker": id}` ... `data: {"done": true}`), `GET /health`,
`GET /stats`. Workers (one per GPU, else one on the CPU) wait in an asyncio queue; a request takes
one, generates in a thread and gives it back when generation ends. Input limits are checked before
anything runs and answered with a 4xx JSON `{"error": ...}` (numbers must be finite and in range:
a 5000-digit `top_k` is a 400, not a 500). Text is streamed UTF-8-safely; a calculator call is streamed
as `{"tool_call": expr}` then `{"tool_result": value}`, never as raw special tokens. The only tool is
the Engine's calculator, a restricted AST evaluator: no request can run code here. `GET /info` names
the run and checkpoint served (and warns when it is a smoke-scale model).

Hardening (issue 15, see :mod:`nanochat_core.chat_web_guard`): same-origin requests only (Host checked
against the bound address, Origin against Host, JSON bodies only, no CORS), a bounded queue and a
per-client concurrency cap (429 + Retry-After), header and body read deadlines. Prompts and replies
are not logged unless `log_conversations=True` (`nanobench serve --log-conversations`).
Binds 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from nanochat_core.chat_cli import describe_run, load_chat_model, reply_parts
from nanochat_core.chat_web_guard import BODY_TIMEOUT_S, Admission, Busy, HostPolicy, SameOriginOnly, uvicorn_settings
from nanochat_core.device import resolve_device
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
    """A finite number in [lo, hi]; integers compared exactly (no float conversion of huge ints)."""
    value = data.get(key)
    if value is None:
        return kind(DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"'{key}' must be {'an integer' if kind is int else 'a number'}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f"'{key}' must be a finite number between {lo} and {hi}")
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise RequestError(f"'{key}' must be an integer")
    if not lo <= value <= hi:
        shown = str(value) if len(str(value)) <= 40 else f"a {len(str(value))}-digit number"
        raise RequestError(f"'{key}' must be between {lo} and {hi}, got {shown}")
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
    except ValueError as err:  # e.g. an integer beyond Python's digit limit
        raise RequestError(f"invalid JSON: {err}") from None
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
    meta: dict = field(default_factory=dict)  # the served checkpoint's meta (step, ...)
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
    choice = resolve_device(device)  # auto | cuda | rocm | mps | xpu | cpu; absent: DeviceUnavailable (a ValueError)
    if choice.torch_type == "cuda":  # NVIDIA or ROCm: one replica per GPU
        count = workers or torch.cuda.device_count()
        devices = [f"cuda:{i % torch.cuda.device_count()}" for i in range(count)]
    elif choice.torch_type == "xpu":
        count = workers or torch.xpu.device_count()
        devices = [f"xpu:{i % torch.xpu.device_count()}" for i in range(count)]
    elif choice.torch_type == "mps":
        devices = ["mps"] * max(1, workers)
    else:
        devices = ["cpu"] * max(1, workers)
    pool, meta = [], {}
    for i, dev in enumerate(devices):
        model, tok, meta = load_chat_model(artifacts_dir, source, dev)
        pool.append(Worker(i, Engine(model, tok), dev))
        log.info("worker %d: %s checkpoint step %s on %s", i, source, meta.get("step"), dev)
    return WorkerPool(pool, meta=dict(meta))


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def create_app(
    pool: WorkerPool,
    *,
    seed: int | None = None,
    ui_file: Path = UI_FILE,
    bind: str = "127.0.0.1",
    allow_hosts: tuple[str, ...] = (),
    info: dict[str, Any] | None = None,
    max_queue: int = 8,
    per_client: int = 2,
    log_conversations: bool = False,
) -> FastAPI:
    """The FastAPI app over a worker pool. `seed` fixes sampling (tests); None = a random seed per request.

    `bind` (the address served) and `allow_hosts` decide which Host names are answered; `info` is what
    `GET /info` reports about the run; `max_queue` requests may wait beyond one per worker and each
    client may have `per_client` at once."""
    app = FastAPI(title="nanobench chat", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SameOriginOnly, policy=HostPolicy(bind, frozenset(h.lower() for h in allow_hosts)))
    started = time.time()
    counters = {"requests": 0, "rejected": 0, "tokens": 0}
    seeds = random.SystemRandom()
    admission = Admission(workers=len(pool.workers), max_queue=max_queue, per_client=per_client)
    served = dict(info or {"run": None, "source": None, "step": None, "preset": None, "warning": None})

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(ui_file.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "ready": bool(pool.workers), "workers": len(pool.workers), "available": pool.available}

    @app.get("/info")
    async def run_info() -> dict[str, Any]:
        return served

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - started, 3),
            "requests": counters["requests"],
            "rejected": counters["rejected"],
            "tokens": counters["tokens"],
            "queued_or_running": admission.pending,
            "workers": [
                {"id": w.id, "device": w.device, "busy": w.busy, "requests": w.requests, "tokens": w.tokens} for w in pool.workers
            ],
        }

    @app.post("/chat/completions")
    async def chat_completions(request: Request):
        declared = request.headers.get("content-length")
        try:
            if declared and declared.isdigit() and len(declared) < 20 and int(declared) > MAX_BODY_BYTES:
                raise RequestError(f"request body larger than {MAX_BODY_BYTES} bytes", 413)
            chat = parse_chat_request(await _read_body(request))
            engine = pool.workers[0].engine
            prompt = prompt_tokens(engine.tokenizer, chat.messages)
            if len(prompt) >= engine.max_positions:
                raise RequestError(f"conversation too long for the model: {len(prompt)} tokens, at most {engine.max_positions - 1}")
            ticket = admission.admit(request.client.host if request.client else "unknown")
        except RequestError as err:
            counters["rejected"] += 1
            return JSONResponse({"error": str(err)}, status_code=err.status)
        except Busy as err:
            counters["rejected"] += 1
            return JSONResponse({"error": str(err)}, status_code=429, headers={"Retry-After": str(err.retry_after_s)})
        counters["requests"] += 1
        request_seed = seed if seed is not None else seeds.randrange(2**31)
        if log_conversations:
            log.info("chat request: %d messages, last user message: %r", len(chat.messages), chat.messages[-1]["content"][:200])
        else:
            log.info("chat request: %d messages", len(chat.messages))
        return StreamingResponse(
            _stream(pool, chat, prompt, request_seed, counters, ticket.release, log_conversations),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(ticket.release),  # also when the stream never started
        )

    return app


async def _read_body(request: Request) -> bytes:
    """The request body, read no further than MAX_BODY_BYTES (a chunked upload declares no length)
    and within BODY_TIMEOUT_S (a client trickling its body is answered 408)."""
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise RequestError(f"request body larger than {MAX_BODY_BYTES} bytes", 413)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout=BODY_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise RequestError(f"request body not received within {BODY_TIMEOUT_S:g} s", 408) from None
    return b"".join(chunks)


async def _stream(
    pool: WorkerPool, chat: ChatRequest, prompt: list[int], seed: int, counters: dict,
    release: Callable[[], None] = lambda: None, log_conversations: bool = False,
) -> AsyncIterator[str]:
    """Generate on a free worker in a thread; relay its parts as SSE lines."""
    try:
        worker = await pool.acquire()
    except BaseException:
        release()
        raise
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        generated: list[int] = []
        try:
            for part in reply_parts(
                worker.engine, prompt, temperature=chat.temperature, top_k=chat.top_k, max_tokens=chat.max_tokens,
                seed=seed, generated=generated, should_stop=stop.is_set,
            ):
                loop.call_soon_threadsafe(queue.put_nowait, (part.kind, part.text))
        except Exception as err:  # reported to the client as an SSE error line
            log.exception("generation failed")
            loop.call_soon_threadsafe(queue.put_nowait, ("error", f"{type(err).__name__}: {err}"))
        finally:
            worker.requests += 1
            worker.tokens += len(generated)
            counters["tokens"] += len(generated)
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            loop.call_soon_threadsafe(pool.release, worker)  # only once the model is free again
            loop.call_soon_threadsafe(release)

    loop.run_in_executor(None, produce)
    reply: list[str] = []
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                break
            if kind == "text":
                reply.append(value)
                yield _sse({"token": value, "worker": worker.id})
            elif kind in ("tool_call", "tool_result"):
                yield _sse({kind: value, "worker": worker.id})
            else:
                yield _sse({"error": value, "worker": worker.id})
        yield _sse({"done": True})
        if log_conversations:
            log.info("chat reply (worker %d): %r", worker.id, "".join(reply)[:200])
    finally:
        stop.set()  # the client went away or we finished: end generation early


def serve(
    run_dir: str | Path,
    *,
    source: str = "sft",
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 0,
    device: str = "auto",
    allow_hosts: tuple[str, ...] = (),
    max_queue: int = 8,
    per_client: int = 2,
    log_conversations: bool = False,
) -> None:
    """Load the workers and run uvicorn until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    pool = build_pool(Path(run_dir) / "artifacts", source=source, workers=workers, device=device)
    info = describe_run(run_dir, source, pool.meta)
    log.info("serving %d worker(s) on http://%s:%d: run %s, %s checkpoint step %s", len(pool.workers), host, port,
             info["run"], source, info["step"])
    if info["warning"]:
        log.warning("%s", info["warning"])
    app = create_app(pool, bind=host, allow_hosts=allow_hosts, info=info, max_queue=max_queue, per_client=per_client,
                     log_conversations=log_conversations)
    uvicorn.run(app, host=host, port=port, log_level="info", **uvicorn_settings())
