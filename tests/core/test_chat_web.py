"""chat_web through a real uvicorn on 127.0.0.1: UI page, streaming SSE, health/stats, every input limit."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from chat_stage_fixtures import save_chat_run, tiny_chat_model
from uvicorn_thread import ServerThread
from nanochat_core.chat_web import (
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    RequestError,
    Worker,
    WorkerPool,
    build_pool,
    create_app,
    parse_chat_request,
    prompt_tokens,
)
from nanochat_core.engine import Engine


@pytest.fixture(scope="module")
def url():
    model, tok = tiny_chat_model()
    pool = WorkerPool([Worker(0, Engine(model, tok), "cpu")])
    with ServerThread(create_app(pool, seed=0, per_client=4)) as base:  # the test clients share one address
        yield base


def stream_events(response: httpx.Response) -> list[dict]:
    raw = response.read()
    text = raw.decode("utf-8")  # strict: the stream is valid UTF-8
    events = []
    for block in text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: ")
            events.append(json.loads(block[len("data: "):]))
    return events


def chat(url: str, body, **kw) -> httpx.Response:
    return httpx.post(f"{url}/chat/completions", json=body, timeout=60, **kw)


def user(text: str = "Hello") -> dict:
    return {"role": "user", "content": text}


def test_index_serves_the_self_contained_ui(url):
    r = httpx.get(f"{url}/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/chat/completions" in r.text and "<script src" not in r.text and "https://" not in r.text


def test_health_and_stats(url):
    h = httpx.get(f"{url}/health").json()
    assert h == {"status": "ok", "ready": True, "workers": 1, "available": 1}
    s = httpx.get(f"{url}/stats").json()
    assert s["workers"][0]["device"] == "cpu" and "requests" in s


def test_streaming_reply(url):
    before = httpx.get(f"{url}/stats").json()["requests"]
    r = chat(url, {"messages": [user("Hello"), {"role": "assistant", "content": "Hi!"}, user("What is 12 + 7?")],
                   "max_tokens": 24, "temperature": 1.0, "top_k": 20})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = stream_events(r)
    assert events[-1] == {"done": True}
    tokens = events[:-1]
    assert tokens and all(set(e) == {"token", "worker"} and e["worker"] == 0 and e["token"] for e in tokens)
    assert httpx.get(f"{url}/stats").json()["requests"] == before + 1
    again = stream_events(chat(url, {"messages": [user("Hello"), {"role": "assistant", "content": "Hi!"}, user("What is 12 + 7?")],
                                     "max_tokens": 24, "temperature": 1.0, "top_k": 20}))
    assert again == events  # the test server uses a fixed seed


def test_concurrent_requests_share_one_worker(url):
    results = []

    def one():
        results.append(stream_events(chat(url, {"messages": [user("Hello")], "max_tokens": 16})))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 3 and all(r[-1] == {"done": True} for r in results)
    assert httpx.get(f"{url}/health").json()["available"] == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": [user()] * (MAX_MESSAGES + 1)}, "too many messages"),
        ({"messages": [user("x" * (MAX_MESSAGE_CHARS + 1))]}, "too long"),
        ({"messages": [user("x" * 7000), {"role": "assistant", "content": "y" * 7000}] * 2 + [user("z" * 5000)]}, "conversation too long"),
        ({"messages": [user()], "temperature": 2.5}, "temperature"),
        ({"messages": [user()], "temperature": -0.1}, "temperature"),
        ({"messages": [user()], "temperature": "hot"}, "temperature"),
        ({"messages": [user()], "top_k": 0}, "top_k"),
        ({"messages": [user()], "top_k": 201}, "top_k"),
        ({"messages": [user()], "top_k": 5.5}, "top_k"),
        ({"messages": [user()], "max_tokens": 0}, "max_tokens"),
        ({"messages": [user()], "max_tokens": 4097}, "max_tokens"),
        ({"messages": [user()], "max_tokens": True}, "max_tokens"),
        ({"messages": [{"role": "system", "content": "obey"}, user()]}, "roles must be"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "roles must be"),
        ({"messages": [user(), {"role": "assistant", "content": "hi"}]}, "last message"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        ({"messages": [{"role": "user", "content": "hi", "name": "x"}]}, "message 0"),
        ({"messages": [user()], "stream": False}, "unknown field"),
        ([user()], "JSON object"),
    ],
)
def test_limits_answer_4xx_json(url, body, fragment):
    r = chat(url, body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def test_invalid_json_and_oversized_body(url):
    r = httpx.post(f"{url}/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    r = httpx.post(f"{url}/chat/completions", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = httpx.post(f"{url}/chat/completions", content=b" " * (2 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()
    assert httpx.get(f"{url}/stats").json()["rejected"] >= 3


def test_parse_defaults_and_prompt_layout():
    req = parse_chat_request(json.dumps({"messages": [user("hi")]}).encode())
    assert (req.temperature, req.top_k, req.max_tokens) == (0.8, 50, 512)
    with pytest.raises(RequestError):
        parse_chat_request(b"null")
    model, tok = tiny_chat_model()
    ids = prompt_tokens(tok, [user("hi"), {"role": "assistant", "content": "yo"}, user("ok")])
    sp = tok.encode_special
    assert ids == [tok.bos_token_id, sp("<|user_start|>"), *tok.encode("hi"), sp("<|user_end|>"),
                   sp("<|assistant_start|>"), *tok.encode("yo"), sp("<|assistant_end|>"),
                   sp("<|user_start|>"), *tok.encode("ok"), sp("<|user_end|>"), sp("<|assistant_start|>")]


def test_build_pool_loads_a_cpu_worker_from_a_run(tmp_path):
    run = save_chat_run(tmp_path / "run")
    pool = build_pool(run / "artifacts", source="sft", device="cpu")
    assert [(w.id, w.device) for w in pool.workers] == [(0, "cpu")]
    with pytest.raises(FileNotFoundError, match="no rl checkpoint"):
        build_pool(run / "artifacts", source="rl", device="cpu")
