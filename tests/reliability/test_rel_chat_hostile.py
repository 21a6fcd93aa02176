"""Bad input to `nanobench serve` (nanochat_core.chat_web) through a real uvicorn on 127.0.0.1.

tests/core/test_chat_web.py covers every field limit, invalid JSON, a declared-oversized body and three
concurrent requests. Added here: an oversized body sent *chunked* (no Content-Length to pre-check), lone
surrogates and raw invalid UTF-8 in strings, clients that hang up mid-stream (the worker must come back),
a burst of concurrent clients (bounded count, every one answered before its timeout, counters consistent),
and the default bind address.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from chat_stage_fixtures import tiny_chat_model  # noqa: E402
from uvicorn_thread import ServerThread  # noqa: E402

from nanochat_core.chat_web import MAX_BODY_BYTES, Worker, WorkerPool, create_app, serve  # noqa: E402
from nanochat_core.engine import Engine  # noqa: E402

CLIENTS = 12
TIMEOUT_S = 90


@pytest.fixture(scope="module")
def url():
    model, tok = tiny_chat_model()
    pool = WorkerPool([Worker(0, Engine(model, tok), "cpu")])
    with ServerThread(create_app(pool, seed=0)) as base:
        yield base


def _events(body: bytes) -> list[dict]:
    return [json.loads(b[len("data: "):]) for b in body.decode("utf-8").split("\n\n") if b.strip()]


def _wait_available(url: str, timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while True:
        health = httpx.get(f"{url}/health", timeout=10).json()
        if health["available"] == health["workers"] or time.time() > deadline:
            return health
        time.sleep(0.1)


def test_oversized_chunked_body_is_refused(url):
    chunk = b" " * (256 << 10)

    def body():
        for _ in range((MAX_BODY_BYTES // len(chunk)) * 4):  # 4x the limit, never declared up front
            yield chunk

    r = httpx.post(f"{url}/chat/completions", content=body(), headers={"content-type": "application/json"}, timeout=TIMEOUT_S)
    assert r.status_code == 413 and "larger than" in r.json()["error"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": [{"role": "user", "content": "a\\ud800b"}], "max_tokens": 4}',  # lone surrogate escape
        b'{"messages": [{"role": "user", "content": "\\udfff\\ud800"}], "max_tokens": 4}',
        # a UTF-8-encoded surrogate: json.loads(bytes) decodes with surrogatepass, so it arrives as one
        b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}], "max_tokens": 4}',
    ],
)
def test_lone_surrogates_are_answered_not_crashed(url, raw):
    r = httpx.post(f"{url}/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=TIMEOUT_S)
    assert r.status_code == 200
    assert _events(r.content)[-1] == {"done": True}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": [{"role": "user", "content": "caf\xc3"}]}',  # truncated multi-byte sequence
        b'\xef\xbb\xbf{"messages": [{"role": "user", "content": "hi"}], "top_k": 1e999}',  # BOM + infinity
        b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nested far past the parser's limit
    ],
)
def test_invalid_utf8_and_hostile_json_get_4xx(url, raw):
    r = httpx.post(f"{url}/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=TIMEOUT_S)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert "error" in r.json()


def test_client_hanging_up_mid_stream_frees_the_worker(url):
    for _ in range(3):
        with httpx.stream("POST", f"{url}/chat/completions", json={"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4000},
                          timeout=TIMEOUT_S) as r:
            assert r.status_code == 200
            next(r.iter_bytes())  # first token arrives, then the client goes away
    health = _wait_available(url)
    assert health["available"] == 1, health
    r = httpx.post(f"{url}/chat/completions", json={"messages": [{"role": "user", "content": "again"}], "max_tokens": 4},
                   timeout=TIMEOUT_S)
    assert _events(r.content)[-1] == {"done": True}


def test_burst_of_concurrent_clients_all_answered_in_time(url):
    before = httpx.get(f"{url}/stats").json()
    results: list[tuple[int, list[dict]] | Exception] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        body = {"messages": [{"role": "user", "content": f"client {i}"}], "max_tokens": 8}
        if i % 3 == 2:
            body["top_k"] = 0  # some clients are also wrong: they must get a 400, not wait in the queue
        try:
            r = httpx.post(f"{url}/chat/completions", json=body, timeout=TIMEOUT_S)
            out: tuple[int, list[dict]] | Exception = (r.status_code, _events(r.content) if r.status_code == 200 else [r.json()])
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            out = exc
        with lock:
            results.append(out)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT_S + 10)
    assert len(results) == CLIENTS and not [r for r in results if isinstance(r, Exception)], results
    ok = [events for status, events in results if status == 200]
    bad = [events for status, events in results if status == 400]
    assert len(ok) == CLIENTS - CLIENTS // 3 and len(bad) == CLIENTS // 3
    assert all(events[-1] == {"done": True} for events in ok)
    assert time.time() - t0 < TIMEOUT_S
    after = httpx.get(f"{url}/stats").json()
    assert after["requests"] - before["requests"] == len(ok)
    assert after["rejected"] - before["rejected"] == len(bad)
    assert _wait_available(url)["available"] == 1


def test_binds_to_localhost_unless_asked():
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    from bench.commands import serve as serve_command

    parser = argparse.ArgumentParser()
    serve_command.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--run-dir", "x"])
    assert args.host == "127.0.0.1"
    assert parser.parse_args(["serve", "--run-dir", "x", "--host", "0.0.0.0"]).host == "0.0.0.0"
