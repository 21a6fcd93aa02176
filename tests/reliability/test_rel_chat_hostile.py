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
import logging
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
    # one address for every test client: room for the whole burst (the caps have their own tests)
    with ServerThread(create_app(pool, seed=0, per_client=CLIENTS, max_queue=CLIENTS)) as base:
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


# ---- issue 15: cross-site requests, admission, read deadlines, numbers, logging ------------------------

from chat_stage_fixtures import save_chat_run  # noqa: E402
from tool_call_fixtures import slow_engine  # noqa: E402

from nanochat_core import chat_web, chat_web_guard  # noqa: E402
from nanochat_core.chat_cli import SMOKE_WARNING, describe_run  # noqa: E402


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "http://127.0.0.1:1"}, 403),  # same host, another port: another origin
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Host": "evil.example"}, 403),  # DNS rebinding: the attacker's name resolving to 127.0.0.1
        ({"Host": "rebind.attacker.test:8000"}, 403),
        ({"Content-Type": "text/plain"}, 415),  # a "simple" cross-site request needs no preflight
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
    ],
)
def test_cross_site_requests_are_refused(url, headers, status):
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    sent = {"Content-Type": "application/json", **headers}
    r = httpx.post(f"{url}/chat/completions", content=body, headers=sent, timeout=30)
    assert r.status_code == status, r.text
    assert "error" in r.json() and "access-control-allow-origin" not in r.headers


def test_same_origin_and_originless_requests_work_and_no_cors_is_offered(url):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for headers in ({}, {"Origin": url}, {"Origin": url.replace("127.0.0.1", "localhost"), "Host": f"localhost:{_port(url)}"},
                    {"Sec-Fetch-Site": "same-origin", "Origin": url}):
        r = httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=30)
        assert r.status_code == 200, (headers, r.text)
    preflight = httpx.options(f"{url}/chat/completions", headers={"Origin": "https://evil.example",
                              "Access-Control-Request-Method": "POST"})
    assert preflight.status_code in (403, 405) and "access-control-allow-origin" not in preflight.headers
    assert httpx.get(f"{url}/stats", headers={"Host": "evil.example"}).status_code == 403


def test_host_policy_by_bind_address():
    loopback = chat_web_guard.HostPolicy("127.0.0.1")
    assert loopback.allows("localhost") and loopback.allows("::1") and not loopback.allows("evil.example")
    wildcard = chat_web_guard.HostPolicy("0.0.0.0", frozenset({"chat.lan"}))
    assert wildcard.allows("192.168.1.5") and wildcard.allows("chat.lan") and not wildcard.allows("evil.example")
    assert chat_web_guard.host_name("[::1]:8000") == "::1" and chat_web_guard.host_name("Example.COM:80") == "example.com"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"messages": [{"role": "user", "content": "hi"}], "top_k": ' + "9" * 5000 + "}", "invalid JSON"),
        ('{"messages": [{"role": "user", "content": "hi"}], "top_k": ' + "9" * 400 + "}", "400-digit"),
        ('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -' + "9" * 400 + "}", "max_tokens"),
        ('{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}', "finite"),
        ('{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "finite"),
        ('{"messages": [{"role": "user", "content": "hi"}], "temperature": -Infinity}', "finite"),
        ('{"messages": [{"role": "user", "content": "hi"}], "top_k": 1e308}', "top_k"),
    ],
)
def test_out_of_range_numbers_are_400_not_500(url, raw, fragment):
    r = httpx.post(f"{url}/chat/completions", content=raw, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def _open_stream(base: str, content: str = "hold"):
    client = httpx.Client(timeout=60)
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 200, "temperature": 1.0}
    response = client.send(client.build_request("POST", f"{base}/chat/completions", json=body), stream=True)
    assert response.status_code == 200
    chunks = response.iter_bytes()
    next(chunks)  # the request is now running on the worker
    response.chunks = chunks  # keep the iterator alive: dropping it would close the stream
    return client, response


def test_full_queue_answers_429_with_retry_after():
    pool = WorkerPool([Worker(0, slow_engine(0.05), "cpu")])
    with ServerThread(create_app(pool, seed=0, max_queue=0, per_client=5)) as base:
        client, response = _open_stream(base)
        try:
            r = httpx.post(f"{base}/chat/completions", json={"messages": [{"role": "user", "content": "next"}]}, timeout=30)
            assert r.status_code == 429 and "busy" in r.json()["error"]
            assert int(r.headers["Retry-After"]) >= 1
        finally:
            response.close()
            client.close()
        deadline = time.time() + 30  # the slot comes back once the first request ends
        while httpx.get(f"{base}/stats").json()["queued_or_running"] and time.time() < deadline:
            time.sleep(0.1)
        r = httpx.post(f"{base}/chat/completions", json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}, timeout=60)
        assert r.status_code == 200


def test_per_client_concurrency_cap():
    pool = WorkerPool([Worker(0, slow_engine(0.05), "cpu")])
    with ServerThread(create_app(pool, seed=0, max_queue=10, per_client=1)) as base:
        client, response = _open_stream(base)
        try:
            r = httpx.post(f"{base}/chat/completions", json={"messages": [{"role": "user", "content": "again"}]}, timeout=30)
            assert r.status_code == 429 and "this client" in r.json()["error"] and "Retry-After" in r.headers
        finally:
            response.close()
            client.close()


def test_slow_headers_and_slow_body_are_cut_off(monkeypatch):
    import socket

    monkeypatch.setattr(chat_web_guard.HeaderTimeoutH11Protocol, "header_timeout_s", 0.5)
    monkeypatch.setattr(chat_web, "BODY_TIMEOUT_S", 0.5)
    model, tok = tiny_chat_model()
    pool = WorkerPool([Worker(0, Engine(model, tok), "cpu")])
    with ServerThread(create_app(pool, seed=0), **chat_web_guard.uvicorn_settings()) as base:
        port = _port(base)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # slowloris: headers never end
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            t0 = time.time()
            assert s.recv(1024) == b""  # closed by the server
            assert time.time() - t0 < 5
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # the body never completes
            s.sendall(b"POST /chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"messages\"")
            reply = s.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert httpx.get(f"{base}/health").json()["status"] == "ok"  # an honest client is still served


def test_prompts_and_replies_are_not_logged_by_default(caplog):
    secret = "my-private-question-4821"
    model, tok = tiny_chat_model()
    caplog.set_level(logging.INFO, logger="nanochat_core.chat_web")
    for log_conversations in (False, True):
        caplog.clear()
        pool = WorkerPool([Worker(0, Engine(model, tok), "cpu")])
        with ServerThread(create_app(pool, seed=0, log_conversations=log_conversations)) as base:
            r = httpx.post(f"{base}/chat/completions", json={"messages": [{"role": "user", "content": secret}], "max_tokens": 4}, timeout=60)
            assert r.status_code == 200
            _wait_available(base)
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert "chat request" in logged
        assert (secret in logged) is log_conversations


def test_info_names_the_run_and_warns_about_smoke_models(tmp_path):
    run_dir = save_chat_run(tmp_path / "20260101T000000Z-smoke-abc123")
    (run_dir / "launch.json").write_text(json.dumps({"preset": "smoke"}))
    pool = chat_web.build_pool(run_dir / "artifacts", source="sft")
    info = describe_run(run_dir, "sft", pool.meta)
    assert info == {"run": run_dir.name, "source": "sft", "step": 1, "preset": "smoke", "warning": SMOKE_WARNING}
    with ServerThread(create_app(pool, seed=0, info=info)) as base:
        assert httpx.get(f"{base}/info").json() == info
    (run_dir / "launch.json").write_text(json.dumps({"preset": "speedrun"}))
    assert describe_run(run_dir, "sft", pool.meta)["warning"] is None
