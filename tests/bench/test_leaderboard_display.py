"""What the leaderboard shows (issue 18): sortable columns, filters, the score-vs-cost and score-vs-time
charts, bitwise determinism as the good outcome, the full run id, resumed/busy flags, a submission page
without duplicated sections, with a readable system description and the loss and power charts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.leaderboard.build import build_site
from bench.leaderboard.markdown import drop_sections, render_markdown
from bench.leaderboard.model import run_flags
from bench.leaderboard.plots import score_svg
from bench.submission import submit_bundle

try:
    from tests.bench.harness_fixtures import make_run_dir
    from tests.bench.test_leaderboard import make_result
except ImportError:
    from harness_fixtures import make_run_dir
    from test_leaderboard import make_result

LONG_ID = "20261125T140445Z-speedrun-e9850c"


def _submit(root: Path, subs: Path, result: dict, *, curves: bool = False, **meta) -> None:
    from bench.bundle import write_bundle
    from bench.report import write_report

    run = make_run_dir(root / f"build-{result['run_id']}", result)
    if curves:
        (run / "progress").mkdir()
        steps = [{"time_ms": 1_795_000_010_000 + i * 500, "key": "step", "value": i, "metadata": {"loss": 9.0 - 0.05 * i}}
                 for i in range(30)]
        (run / "progress" / "pretrain.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
        lines = (run / "power.csv").read_text().splitlines()
        rows = [lines[0] + ",gpu_total_w,cpu_w,cpu_util_pct"] + [f"{r},{5600 + i},{300},90" for i, r in enumerate(lines[1:])]
        (run / "power.csv").write_text("\n".join(rows) + "\n")
    write_report(run, result)
    write_bundle(run, key_dir=root / "keys")
    submit_bundle(run, subs, pins=False, **meta)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb-display")
    subs = root / "submissions"
    bitwise = make_result(LONG_ID, rate=24.0, pretrain_s=3600.0, determinism={"class": "bitwise"},
                          resume={"resumed": True, "carried_seconds": 82.0}, run_conditions={"busy": True},
                          created_utc="2026-11-25T14:10:05+00:00")
    _submit(root, subs, bitwise, curves=True, label="8x H100 | lab", availability="rentable")
    _submit(root, subs, make_result("run-quiet", rate=4.0, pretrain_s=5400.0, gpus=1, gpu_name="NVIDIA A100 80GB",
                                    machine_id="1xNVIDIA-A100-80GB", chatcore=None))
    out = root / "site"
    build_site(subs, out, pins={"spec_version": "1"}, rank_rules=False)
    return out


def test_run_flags_read_resume_busy_and_date():
    assert run_flags({"created_utc": "2026-11-25T14:10:05+00:00", "resume": {"resumed": True, "carried_seconds": 82},
                      "run_conditions": {"busy": False}}) == ("2026-11-25", True, 82.0, False)
    # older bundles: carried seconds on the phases, no load record
    assert run_flags({"phases": [{"carried_seconds": 10.0}, {"carried_seconds": 5}]}) == (None, True, 15.0, None)
    assert run_flags({"created_utc": 7, "resume": "x"}) == (None, False, 0.0, None)


def test_index_has_sortable_columns_filters_and_flags(site):
    html = (site / "index.html").read_text()
    keys = re.findall(r'data-sort-key="([a-z]+)"', html)
    assert {"rank", "hardware", "gpus", "usd", "minutes", "core", "chatcore", "energy", "date", "run"} <= set(keys)
    row = re.search(rf'<tr class="lb-row" data-run-id="{LONG_ID}"[^>]*>', html).group(0)
    assert 'data-sort-usd="' in row and 'data-sort-chatcore=""' not in row and 'data-date="2026-11-25"' in row
    assert 'data-availability="rentable"' in row and "8x h100 | lab" in row  # search text, lower case
    quiet = re.search(r'<tr class="lb-row" data-run-id="run-quiet"[^>]*>', html).group(0)
    assert 'data-sort-chatcore=""' in quiet and 'data-availability="unspecified"' in quiet
    for control in ("data-search", "data-board-filter", "data-date-from", "data-date-to", 'data-filter="availability"'):
        assert control in html, control
    assert f">{LONG_ID}</a>" in html  # the full run id, not a shortened one
    bitwise = re.search(r'<span class="badge ([^"]*)"[^>]*>&#10003; bitwise</span>', html)
    assert bitwise and "badge-ok" in bitwise.group(1)  # the good outcome, styled as such
    assert "resumed (82 s carried)" in html and "busy machine" in html
    assert (site / "plots" / "pareto-speedrun.svg").is_file() and (site / "plots" / "time-speedrun.svg").is_file()
    assert 'src="plots/time-speedrun.svg"' in html


def test_charts_put_score_against_log_cost_and_time():
    class R:
        def __init__(self, rank, usd, minutes, core, label="CORE"):
            self.rank, self.usd, self.minutes, self.core, self.core_label = rank, usd, minutes, core, label

    rows = [R(1, 2.0, 90.0, 0.20), R(2, 20.0, 30.0, 0.25), R(3, 30.0, 40.0, 0.22), R(4, 1.0, 10.0, None)]
    svg = score_svg(rows, x="usd", title="t")  # matplotlib keeps each text as an SVG comment
    assert "<!-- cost (USD, log scale) -->" in svg and "<!-- score (CORE, centered) -->" in svg
    assert "<!-- Pareto frontier -->" in svg and "<!-- #4 -->" not in svg  # no score: not plotted
    assert "<!-- $2 -->" in svg or "<!-- \\$2 -->" in svg or "$2" in svg  # plain dollar ticks, no 2x10^0
    timed = score_svg(rows, x="minutes", title="t")
    assert "<!-- time (minutes, log scale) -->" in timed
    empty = score_svg([R(1, 1.0, 1.0, None)], x="minutes", title="t")
    assert "no run on this board has a score" in empty


def test_submission_page_sections_once_readable_system_and_curves(site):
    page = (site / "s" / "speedrun" / LONG_ID / "index.html").read_text()
    for title in ("System", "Phases", "Pricing", "Workload", "Report card"):
        assert page.count(f"<h2>{title}</h2>") == 1, title
    report = page.split('<section class="report-card"', 1)[1].split("</section>", 1)[0]
    for dropped in ("<h3>Result</h3>", "<h3>Phases</h3>", "<h3>System</h3>", "<h3>Pricing</h3>", "<h3>Workload</h3>"):
        assert dropped not in report, dropped
    assert "<h3>Stages</h3>" in report and "<h3>Scores</h3>" in report
    summary = page.split('<dl class="kv system-summary">', 1)[1].split("</dl>", 1)[0]
    for label, text in (("GPU model", "NVIDIA H100 80GB HBM3"), ("GPU count", "8"), ("CPU", "Test CPU")):
        assert f"<dt>{label}</dt><dd>{text}" in summary, label
    for label in ("GPU memory", "Interconnect", "GPU driver / CUDA", "torch"):
        assert f"<dt>{label}</dt>" in summary
    page_dir = site / "s" / "speedrun" / LONG_ID
    assert 'src="loss.svg"' in page and (page_dir / "loss.svg").read_text().lstrip().startswith("<?xml")
    assert 'src="power.svg"' in page and (page_dir / "power.svg").is_file()
    quiet = (site / "s" / "speedrun" / "run-quiet" / "index.html").read_text()
    assert "Not drawn: no training steps recorded under progress/." in quiet


def test_markdown_drops_sections_and_keeps_escaped_pipes():
    text = "# title\n\n- a\n\n## Result\n\nx\n\n## Scores\n\n| a | b |\n|---|---|\n| p \\| q | r |\n\n## System\n\ny\n"
    kept = drop_sections(text, {"Result", "System"})
    assert "# title" not in kept and "## Result" not in kept and "y" not in kept.split("## Scores")[1]
    html = str(render_markdown(text, skip_sections=frozenset({"Result"})))
    assert "<td>p | q</td><td>r</td>" in html and "<h3>System</h3>" in html and "<h3>Result</h3>" not in html
    note = str(render_markdown("> **Warning:** few <examples>"))
    assert note == '<p class="md-note"><strong>Warning:</strong> few &lt;examples&gt;</p>'
