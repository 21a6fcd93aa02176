"""The built leaderboard in headless Chromium over file://, under the site's strict CSP: rows in cost
order, sortable columns, filters (search, preset, availability, date, price kind, GPUs), a 390 px
phone layout without sideways scrolling, the submission page's charts; no console errors, nothing
fetched from the network. (docs/screenshots/ is made from real bundles by scripts/screenshots.py.)

State is awaited with locators and expect-style assertions only: nothing evaluates a string as
JavaScript in the page (the site's Content-Security-Policy forbids 'unsafe-eval', and a string
predicate such as ``page.wait_for_function("...")`` fails there). Runs once per installed Chromium
(see conftest.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.browser]

sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
expect = sync_api.expect

try:
    from tests.bench.test_leaderboard import EXPECTED_ORDER, build_fixture_submissions, make_result
except ImportError:
    sys.path.insert(0, str(REPO / "tests" / "bench"))
    from test_leaderboard import EXPECTED_ORDER, build_fixture_submissions, make_result  # type: ignore[no-redef]

CURVES_RUN = "run-curves"


def _add_curves_submission(root: Path, subs: Path) -> None:
    """A ``smoke`` submission whose bundle has a loss curve (progress/) and power readings (power.csv)."""
    from bench.bundle import write_bundle
    from bench.report import write_report
    from bench.submission import submit_bundle

    try:
        from tests.bench.harness_fixtures import make_run_dir
    except ImportError:
        from harness_fixtures import make_run_dir  # type: ignore[no-redef]

    result = make_result(CURVES_RUN, rate=2.0, pretrain_s=300.0, preset="smoke", gpus=1, gpu_name="NVIDIA L4",
                         machine_id="1xNVIDIA-L4", created_utc="2026-12-24T10:00:00+00:00")
    run = make_run_dir(root / "curves-build", result)
    (run / "progress").mkdir()
    steps = [{"time_ms": 1_795_000_010_000 + i * 500, "key": "step", "value": i, "metadata": {"loss": 9.0 - 0.05 * i}}
             for i in range(40)]
    (run / "progress" / "pretrain.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    lines = (run / "power.csv").read_text().splitlines()
    with_watts = [lines[0] + ",gpu_total_w,cpu_w,cpu_util_pct"] + [f"{row},{60 + i % 7},{35 + i % 3},90" for i, row in enumerate(lines[1:])]
    (run / "power.csv").write_text("\n".join(with_watts) + "\n")
    write_report(run, result)
    write_bundle(run, key_dir=root / "keys")
    submit_bundle(run, subs, availability="owned", pins=False)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    from bench.leaderboard.build import build_site

    root = tmp_path_factory.mktemp("lb-ui")
    subs = build_fixture_submissions(root)
    _add_curves_submission(root, subs)
    build_site(subs, root / "site", pins={"spec_version": "1"}, rank_rules=False)
    return root / "site"


def _open(browser, url: str, *, javascript: bool = True, width: int = 1440):
    context = browser.new_context(viewport={"width": width, "height": 1000}, java_script_enabled=javascript)
    page = context.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda msg: problems.append(f"{msg.type}: {msg.text}") if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("requestfailed", lambda req: problems.append(f"requestfailed: {req.url}"))
    page.on("request", lambda req: requests.append(req.url))
    page.goto(url)
    page.wait_for_load_state("load")
    return context, page, problems, requests


def _ids(page, board: str = "speedrun") -> list[str]:
    """data-run-id of the board's rows that are shown, in document order (no script evaluated in the page)."""
    rows = page.locator(f"section[data-board='{board}'] tr.lb-row:not([hidden])")
    return [rows.nth(i).get_attribute("data-run-id") for i in range(rows.count())]


def _shown(page, board: str = "speedrun"):
    return page.locator(f"section[data-board='{board}'] tr.lb-row:not([hidden])")


def test_rows_order_filters_and_no_console_errors(built_site, browser, tmp_path):
    context, page, problems, requests = _open(browser, (built_site / "index.html").as_uri())
    try:
        csp = page.locator("meta[http-equiv='Content-Security-Policy']").get_attribute("content")
        assert "script-src 'self'" in csp and "unsafe" not in csp  # the strict policy stays
        expect(page.locator("#filters")).to_be_visible()
        assert _ids(page) == EXPECTED_ORDER
        assert page.locator("tr.lb-row", has_text='<script>alert("label")</script>').count() == 1

        page.select_option("select[data-filter='price-kind']", "spot")
        expect(_shown(page)).to_have_count(1)
        assert _ids(page) == ["run-cheap"]
        expect(page.locator("#filter-status")).to_have_text("showing 1 of 4 runs")
        page.select_option("select[data-filter='price-kind']", "")
        page.select_option("select[data-filter='gpus']", "8")
        expect(_shown(page)).to_have_count(2)
        assert _ids(page) == ["run-mid", "run-pricey"]
        page.select_option("select[data-filter='price-kind']", "spot")
        expect(_shown(page)).to_have_count(0)
        expect(page.locator("section[data-board='speedrun'] tr.no-match")).to_be_visible()
        page.click("button[type=reset]")
        expect(_shown(page)).to_have_count(3)  # awaited by a locator, not a string predicate evaluated in the page

        page.fill("input[data-search]", "b200")
        expect(_shown(page)).to_have_count(1)
        assert _ids(page) == ["run-pricey"]
        expect(_shown(page, "smoke")).to_have_count(0)
        page.fill("input[data-search]", "L4 smoke")  # every word must match; case-insensitive
        expect(_shown(page, "smoke")).to_have_count(1)
        expect(_shown(page)).to_have_count(0)
        page.fill("input[data-search]", "")

        page.select_option("select[data-board-filter]", "smoke")
        expect(page.locator("section[data-board='speedrun']")).to_be_hidden()
        expect(page.locator("section[data-board='smoke']")).to_be_visible()
        page.select_option("select[data-board-filter]", "")
        page.select_option("select[data-filter='availability']", "rentable")
        expect(_shown(page)).to_have_count(1)
        assert _ids(page) == ["run-mid"]
        page.select_option("select[data-filter='availability']", "unspecified")
        expect(_shown(page)).to_have_count(2)
        page.select_option("select[data-filter='availability']", "")

        page.fill("input[data-date-from]", "2026-12-01")  # only the smoke run is dated after this
        expect(_shown(page)).to_have_count(0)
        expect(_shown(page, "smoke")).to_have_count(1)
        page.fill("input[data-date-from]", "")
        page.fill("input[data-date-to]", "2026-12-01")
        expect(_shown(page)).to_have_count(3)
        expect(_shown(page, "smoke")).to_have_count(0)
        page.click("button[type=reset]")
        expect(_shown(page)).to_have_count(3)
        expect(page.locator("#filter-status")).to_have_text("")

        expect(page.locator("img")).to_have_count(4)  # two charts per board, both boards
        assert all(url.startswith("file://") for url in requests), requests
        assert problems == []

        shot = tmp_path / "leaderboard.png"  # docs/screenshots/ comes from real bundles: scripts/screenshots.py
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        context.close()


def test_columns_sort_both_ways_and_missing_values_last(built_site, browser):
    context, page, problems, _ = _open(browser, (built_site / "index.html").as_uri())
    try:
        board = page.locator("section[data-board='speedrun']")
        minutes = board.locator("th[data-sort-key='minutes']")
        minutes.locator("button").click()
        expect(minutes).to_have_attribute("aria-sort", "ascending")
        assert _ids(page) == ["run-pricey", "run-mid", "run-cheap"]  # 37.8, 64.5, 94.5 minutes
        expect(board.locator("th[data-sort-key='rank']")).not_to_have_attribute("aria-sort", "ascending")
        expect(board.locator("select[data-sort-select]")).to_be_hidden()  # the phone-only sort list
        minutes.locator("button").click()
        expect(minutes).to_have_attribute("aria-sort", "descending")
        assert _ids(page) == ["run-cheap", "run-mid", "run-pricey"]

        chat = board.locator("th[data-sort-key='chatcore']")
        chat.locator("button").click()  # scores sort best-first on the first click
        expect(chat).to_have_attribute("aria-sort", "descending")
        assert _ids(page)[-1] == "run-cheap"  # no ChatCORE: last
        chat.locator("button").click()
        expect(chat).to_have_attribute("aria-sort", "ascending")
        assert _ids(page)[-1] == "run-cheap"  # still last: a missing value is never "smallest"

        board.locator("th[data-sort-key='hardware'] button").click()
        assert _ids(page) == ["run-cheap", "run-pricey", "run-mid"]  # 1xNVIDIA-A100.., 8xNVIDIA-B200, <script>...
        board.locator("th[data-sort-key='rank'] button").click()
        assert _ids(page) == EXPECTED_ORDER
        page.select_option("select[data-filter='gpus']", "8")  # filters still apply after sorting
        expect(_shown(page)).to_have_count(2)
        assert problems == []
    finally:
        context.close()


def test_phone_width_390_has_no_sideways_scrolling(built_site, browser):
    context, page, problems, _ = _open(browser, (built_site / "index.html").as_uri(), width=390)
    try:
        rows = _shown(page)
        expect(rows).to_have_count(3)
        for i in range(rows.count()):
            box = rows.nth(i).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
            link = rows.nth(i).locator("td.c-run a")
            expect(link).to_be_visible()
            link_box = link.bounding_box()
            assert link_box["x"] + link_box["width"] <= 390, link_box  # the full run id wraps inside the card
        for selector in ("#filters", "section.board", "figure.chart img", "header.site-header"):
            items = page.locator(selector)
            for i in range(items.count()):
                box = items.nth(i).bounding_box()
                assert box is not None and box["x"] + box["width"] <= 390 + 0.5, (selector, box)
        # each cell of a card carries its column name, since the header row is not shown
        assert rows.first.locator("td.c-run").get_attribute("data-label") == "Run"
        expect(rows.first.locator("td.c-run")).to_contain_text("run-cheap")
        # sorting still works on a phone: a "Sort by" list replaces the hidden column headings
        sort = page.locator("section[data-board='speedrun'] select[data-sort-select]")
        expect(sort).to_be_visible()
        sort.select_option(label="Minutes \u2191")
        assert _ids(page) == ["run-pricey", "run-mid", "run-cheap"]
        sort.select_option(label="Minutes \u2193")
        assert _ids(page) == ["run-cheap", "run-mid", "run-pricey"]
        assert problems == []
    finally:
        context.close()


def test_submission_page_loads_without_errors(built_site, browser):
    context, page, problems, requests = _open(browser, (built_site / "index.html").as_uri())
    try:
        page.click("tr[data-run-id='run-mid'] td.c-run a")
        page.wait_for_load_state("load")
        assert page.url.endswith("/s/speedrun/run-mid/index.html")
        expect(page.locator("h1")).to_have_text('<script>alert("label")</script>')
        expect(page.locator(".run-id code")).to_have_text("run-mid")
        expect(page.locator("img[src='phases.svg']")).to_be_visible()
        # one System section, readable; the report card does not repeat the page's sections
        expect(page.locator("h2", has_text="System")).to_have_count(1)
        expect(page.locator("h2", has_text="Phases")).to_have_count(1)
        expect(page.locator(".system-summary dt", has_text="GPU model")).to_have_count(1)
        expect(page.locator(".report-card h3", has_text="Result")).to_have_count(0)
        expect(page.locator(".report-card h3", has_text="Scores")).to_have_count(1)
        assert all(url.startswith("file://") for url in requests), requests
        assert problems == []
    finally:
        context.close()


def test_submission_page_draws_loss_curve_and_power(built_site, browser):
    context, page, problems, _ = _open(browser, (built_site / "s" / "smoke" / CURVES_RUN / "index.html").as_uri())
    try:
        expect(page.locator("figure[data-chart='loss'] img[src='loss.svg']")).to_be_visible()
        expect(page.locator("figure[data-chart='power'] img[src='power.svg']")).to_be_visible()
        expect(page.locator(".system-summary dd", has_text="1 x NVIDIA L4")).to_have_count(1)
        assert problems == []
    finally:
        context.close()


def test_tables_readable_without_javascript(built_site, browser):
    context, page, problems, _ = _open(browser, (built_site / "index.html").as_uri(), javascript=False)
    try:
        rows = page.locator("section[data-board='speedrun'] tr.lb-row")
        assert [rows.nth(i).get_attribute("data-run-id") for i in range(rows.count())] == EXPECTED_ORDER
        expect(page.locator("tr.lb-row:visible")).to_have_count(4)
        expect(page.locator("#filters")).to_be_hidden()  # the filter form needs JavaScript, so it stays hidden
        assert problems == []
    finally:
        context.close()
