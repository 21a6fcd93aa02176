"""The chat UI in headless Debian Chromium (playwright): type a message, watch the streamed reply, screenshot.

Skipped when /usr/bin/chromium is absent. The screenshot goes to a tmp dir and is copied to
docs/screenshots/chat_ui.png.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser  # Chromium comes from the `browser` fixture (conftest.py)

sys.path.insert(0, str(ROOT / "tests" / "core"))
from test_chat_web import ServerThread  # noqa: E402

from chat_stage_fixtures import tiny_chat_model  # noqa: E402


@pytest.fixture(scope="module")
def url():
    from nanochat_core.chat_web import Worker, WorkerPool, create_app
    from nanochat_core.engine import Engine

    model, tok = tiny_chat_model(seq_len=1024)  # room for several 512-token replies
    with ServerThread(create_app(WorkerPool([Worker(0, Engine(model, tok), "cpu")]), seed=0)) as base:
        yield base


def test_type_a_message_and_see_the_streamed_reply(browser, url, tmp_path):
    page = browser.new_page(viewport={"width": 960, "height": 640})
    try:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("#status-dot.ok")
        page.fill("#input", "/topk 40")
        page.press("#input", "Enter")
        assert "top-k 40" in page.inner_text("#settings")
        page.fill("#input", "/maxtokens 48")
        page.press("#input", "Enter")
        assert "max 48 tokens" in page.inner_text("#settings")
        page.fill("#input", "Hello! What is 12 + 7?")
        page.press("#input", "Enter")
        page.wait_for_selector(".msg.user")
        page.wait_for_function(
            "() => { const a = document.querySelectorAll('.msg.assistant');"
            " return a.length === 1 && !a[0].classList.contains('streaming') && a[0].textContent.length > 0; }",
            timeout=30_000,
        )
        assert page.inner_text(".msg.user") == "Hello! What is 12 + 7?"
        first_reply = page.inner_text(".msg.assistant")
        assert first_reply.strip()
        page.fill("#input", "Thanks. Tell me more.")
        page.press("#input", "Enter")
        page.wait_for_function(
            "() => { const a = document.querySelectorAll('.msg.assistant');"
            " return a.length === 2 && !a[1].classList.contains('streaming'); }",
            timeout=30_000,
        )
        assert not errors, errors
        shot = tmp_path / "chat_ui.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    assert shot.stat().st_size > 5_000
    if os.environ.get("NANOBENCH_UPDATE_SCREENSHOTS") == "1":  # tests leave the tracked tree alone unless asked
        dest = ROOT / "docs" / "screenshots" / "chat_ui.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, dest)
