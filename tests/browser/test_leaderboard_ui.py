"""The built leaderboard in headless Chromium over file://: rows in cost order, filters hide rows,
no console errors, nothing fetched from the network; saves docs/screenshots/leaderboard.png."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "screenshots" / "leaderboard.png"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install -y chromium)"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")

try:
    from tests.bench.test_leaderboard import EXPECTED_ORDER, build_fixture_submissions
except ImportError:
    sys.path.insert(0, str(REPO / "tests" / "bench"))
    from test_leaderboard import EXPECTED_ORDER, build_fixture_submissions  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    from bench.leaderboard.build import build_site

    root = tmp_path_factory.mktemp("lb-ui")
    subs = build_fixture_submissions(root)
    build_site(subs, root / "site", pins={"spec_version": "1"})
    return root / "site"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


def _open(browser, url: str, *, javascript: bool = True):
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, java_script_enabled=javascript)
    page = context.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda msg: problems.append(f"{msg.type}: {msg.text}") if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("request", lambda req: requests.append(req.url))
    page.goto(url)
    page.wait_for_load_state("load")
    return context, page, problems, requests


def _visible_run_ids(page) -> list[str]:
    return page.eval_on_selector_all("tr.lb-row", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.runId)")


def test_rows_order_filters_and_no_console_errors(built_site, browser, tmp_path):
    context, page, problems, requests = _open(browser, (built_site / "index.html").as_uri())
    try:
        assert _visible_run_ids(page) == EXPECTED_ORDER
        assert page.is_visible("#filters")
        assert "alert" not in "".join(problems)  # the <script> label stayed text
        assert page.locator("tr.lb-row", has_text='<script>alert("label")</script>').count() == 1

        page.select_option("select[data-filter='price-kind']", "spot")
        assert _visible_run_ids(page) == ["run-cheap"]
        assert page.inner_text("#filter-status") == "showing 1 of 3 runs"
        page.select_option("select[data-filter='price-kind']", "")
        page.select_option("select[data-filter='gpus']", "8")
        assert _visible_run_ids(page) == ["run-mid", "run-pricey"]
        page.select_option("select[data-filter='price-kind']", "spot")
        assert _visible_run_ids(page) == [] and page.is_visible("tr.no-match")
        page.click("button[type=reset]")
        page.wait_for_function("document.querySelectorAll('tr.lb-row:not([hidden])').length === 3")

        images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.src, i.naturalWidth])")
        assert images and all(width > 0 for _, width in images), images
        assert all(url.startswith("file://") for url in requests), requests
        assert problems == []

        shot = tmp_path / "leaderboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    finally:
        context.close()


def test_submission_page_loads_without_errors(built_site, browser):
    context, page, problems, requests = _open(browser, (built_site / "index.html").as_uri())
    try:
        page.click("tr[data-run-id='run-mid'] td.c-run a")
        page.wait_for_load_state("load")
        assert page.url.endswith("/s/speedrun/run-mid/index.html")
        assert page.locator("h1").inner_text() == '<script>alert("label")</script>'
        assert page.locator(".report-card table").count() >= 3
        assert page.eval_on_selector("img[src='phases.svg']", "i => i.naturalWidth") > 0
        assert all(url.startswith("file://") for url in requests), requests
        assert problems == []
    finally:
        context.close()


def test_tables_readable_without_javascript(built_site, browser):
    context, page, problems, _ = _open(browser, (built_site / "index.html").as_uri(), javascript=False)
    try:
        assert page.eval_on_selector_all("tr.lb-row", "rows => rows.map(r => r.dataset.runId)") == EXPECTED_ORDER
        assert page.locator("tr.lb-row:visible").count() == 3
        assert not page.is_visible("#filters")  # the filter form needs JavaScript, so it stays hidden
        assert problems == []
    finally:
        context.close()
