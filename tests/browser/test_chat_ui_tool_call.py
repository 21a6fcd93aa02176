"""The chat UI shows a calculator call as a tool call and its result (issue 18 item 9), never raw special
tokens, and says which run and checkpoint it serves, with the smoke-model warning.

A real Engine over the tiny model steered to call the calculator (tests/core/tool_call_fixtures.py): the
Engine parses the call, the calculator evaluates it, the server streams `tool_call` / `tool_result`
events and the page renders them. Headless Debian Chromium through playwright; waits use locators and
expect-style assertions (no strings evaluated in the page). Skipped when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser  # Chromium comes from the `browser` fixture (conftest.py)

sys.path.insert(0, str(ROOT / "tests" / "core"))
sys.path.insert(0, str(ROOT / "tests"))
from tool_call_fixtures import tool_call_engine  # noqa: E402
from uvicorn_thread import ServerThread  # noqa: E402

INFO = {"run": "20260101T000000Z-smoke-abc123", "source": "sft", "step": 34, "preset": "smoke",
        "warning": "This checkpoint comes from a smoke run: its replies are nonsense by design."}


@pytest.fixture(scope="module")
def url():
    from nanochat_core.chat_web import Worker, WorkerPool, create_app

    engine, _ = tool_call_engine("12+7", " so it is 19")
    with ServerThread(create_app(WorkerPool([Worker(0, engine, "cpu")]), seed=0, info=INFO)) as base:
        yield base


def test_tool_call_is_rendered_as_a_call_and_its_result(browser, url, tmp_path):
    expect = pytest.importorskip("playwright.sync_api").expect
    page = browser.new_page(viewport={"width": 960, "height": 640})
    try:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        expect(page.locator("#run-info")).to_contain_text("run 20260101T000000Z-smoke-abc123 · sft checkpoint, step 34")
        expect(page.locator("#warning")).to_be_visible()
        expect(page.locator("#warning")).to_contain_text("nonsense")
        page.fill("#input", "What is 12 + 7?")
        page.press("#input", "Enter")
        reply = page.locator(".msg.assistant:not(.streaming)")
        expect(reply).to_have_count(1, timeout=30_000)
        expect(reply.locator(".tool.call")).to_have_text("12+7")
        expect(reply.locator(".tool.result")).to_have_text("19")
        expect(reply).to_contain_text("so it is 19")
        text = reply.inner_text()
        assert "<|" not in text and "|>" not in text  # no raw special token anywhere
        page.fill("#input", "And again?")  # the follow-up request (history with a tool call) is accepted
        page.press("#input", "Enter")
        expect(page.locator(".msg.assistant:not(.streaming)")).to_have_count(2, timeout=30_000)
        expect(page.locator(".msg.error")).to_have_count(0)
        assert not errors, errors
        shot = tmp_path / "chat_tool_call.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    assert shot.stat().st_size > 5_000
    screenshots = ROOT / "docs" / "screenshots"
    if screenshots.is_dir() and os.environ.get("NANOBENCH_UPDATE_SCREENSHOTS") == "1":
        (screenshots / "chat_tool_call.png").write_bytes(shot.read_bytes())
