"""bench.leaderboard and `nanobench leaderboard build`: verified rows sorted by cost, bad submissions
excluded with reasons, JSON/CSV equal to the HTML rows, every submitted string escaped."""

from __future__ import annotations

import csv
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from bench.bundle import write_bundle
from bench.cli import main
from bench.cost import Pricing, price_phases, triple
from bench.leaderboard.build import SiteError, build_site, safe_file_name
from bench.leaderboard.markdown import render_markdown
from bench.leaderboard.plots import pareto_front
from bench.submission import submit_bundle

try:
    from tests.bench.harness_fixtures import make_run_dir, synthetic_result
except ImportError:
    from harness_fixtures import make_run_dir, synthetic_result

XSS_LABEL = '<script>alert("label")</script>'
XSS_NOTES = '<img src=x onerror=alert(1)> & "quoted"'


def make_result(
    run_id: str,
    *,
    rate: float,
    pretrain_s: float,
    price_kind: str = "on-demand",
    energy: bool = True,
    core: float | None = 0.22,
    core_label: str = "CORE",
    chatcore: float | None = 0.09,
    machine_id: str = "8xNVIDIA-H100-80GB-HBM3",
    gpus: int = 8,
    gpu_name: str = "NVIDIA H100 80GB HBM3",
    preset: str = "speedrun",
    **extra: Any,
) -> dict[str, Any]:
    """A consistent result.json dict (costs computed with bench.cost, so verify's recomputation agrees)."""
    pricing = Pricing(rate, f"https://example.test/pricing/{machine_id}", price_kind, "2026-11-20", 0.15 if energy else None)
    watts = 700.0 * max(gpus, 1)
    phases = [
        {"name": "download", "seconds": 20.0, "energy_joules": None, "counted": False},
        {"name": "tokenizer", "seconds": 30.0, "energy_joules": 30.0 * watts if energy else None, "counted": True},
        {"name": "pretrain", "seconds": pretrain_s, "energy_joules": pretrain_s * watts if energy else None, "counted": True},
        {"name": "base_eval", "seconds": 240.0, "energy_joules": 240.0 * watts if energy else None, "counted": True},
    ]
    phases = price_phases(phases, pricing)
    metrics = {"val_bpb": 0.81, "core": {"score": core, "label": core_label} if core is not None else None,
               "chatcore": chatcore, "tok_per_s": 1.0e6, "mfu": 0.4}
    system = {
        "machine_id": machine_id,
        "accelerator_count": gpus,
        "gpus": {"count": gpus, "devices": [{"name": gpu_name}] * gpus},
        "cpu": {"model": "Test CPU", "physical_cores": 16},
    }
    return synthetic_result(
        run_id=run_id,
        preset=preset,
        system=system,
        pricing=pricing.to_dict(),
        phases=phases,
        metrics=metrics,
        triple=triple(phases, core, chatcore, core_label=core_label),
        **extra,
    )


def make_bundle(tmp: Path, result: dict[str, Any], key_dir: Path) -> Path:
    """A signed run directory holding ``result`` (plus a report.md)."""
    from bench.report import render_report

    root = tmp / f"build-{result['run_id']}"
    root.mkdir(parents=True)
    run = make_run_dir(root, result)
    (run / "report.md").write_text(render_report(result), encoding="utf-8")
    write_bundle(run, key_dir=key_dir)
    return run


GOOD = [
    # (run_id, make_result kwargs); inserted in an order that is not the cost order
    ("run-mid", {"rate": 24.0, "pretrain_s": 3600.0, "machine_id": "8xNVIDIA-H100-80GB-HBM3"}),
    ("run-cheap", {"rate": 4.0, "pretrain_s": 5400.0, "price_kind": "spot", "gpus": 1, "gpu_name": "NVIDIA A100 80GB",
                   "machine_id": "1xNVIDIA-A100-80GB", "core_label": "CORE-offline-18", "energy": False, "chatcore": None}),
    ("run-pricey", {"rate": 48.0, "pretrain_s": 2000.0, "price_kind": "owned", "gpus": 8, "gpu_name": "NVIDIA B200",
                    "machine_id": "8xNVIDIA-B200"}),
]
EXPECTED_ORDER = ["run-cheap", "run-mid", "run-pricey"]


def build_fixture_submissions(root: Path) -> Path:
    """``root/submissions`` with three good submissions, one tampered and four malformed ones."""
    key_dir = root / "keys"
    subs = root / "submissions"
    work = root / "work"
    for run_id, kwargs in GOOD:
        label = XSS_LABEL if run_id == "run-mid" else None
        notes = XSS_NOTES if run_id == "run-mid" else None
        submit_bundle(make_bundle(work, make_result(run_id, **kwargs), key_dir), subs, label=label, notes=notes,
                      availability="rentable" if run_id == "run-mid" else None, pins=False)
    # tampered: submitted fine, then its result.json edited (cheaper than every honest run)
    tampered = submit_bundle(make_bundle(work, make_result("run-tampered", rate=10.0, pretrain_s=3000.0), key_dir), subs, pins=False)
    data = json.loads((tampered / "result.json").read_text())
    data["triple"]["usd"] = 0.01
    (tampered / "result.json").write_text(json.dumps(data))
    # malformed 1: not JSON, no manifest
    garbage = subs / "speedrun" / "run-garbage"
    garbage.mkdir(parents=True)
    (garbage / "result.json").write_text("{not json")
    # malformed 2: signed, verifies, but a field has the wrong type
    bad_type = make_result("run-badtype", rate=1.0, pretrain_s=100.0)
    bad_type["triple"]["core_label"] = 18
    submit_bundle(make_bundle(work, bad_type, key_dir), subs, pins=False)
    # malformed 3: signed bundle with an unknown schema_version, filed by hand
    future = make_bundle(work, make_result("run-future", rate=1.0, pretrain_s=100.0, schema_version=99), key_dir)
    shutil.copytree(future, subs / "speedrun" / "run-future", ignore=shutil.ignore_patterns("artifacts"))
    # malformed 4: a good bundle filed under the wrong preset
    misfiled = make_bundle(work, make_result("run-misfiled", rate=1.0, pretrain_s=100.0), key_dir)
    shutil.copytree(misfiled, subs / "other" / "run-misfiled", ignore=shutil.ignore_patterns("artifacts"))
    # a broken submission.json never drops a valid bundle
    (subs / "speedrun" / "run-pricey" / "submission.json").write_text("[1, 2")
    # noise the walker must skip
    (subs / "README.md").write_text("submissions live here\n")
    (subs / "speedrun" / ".incoming-x").mkdir()
    return subs


EXCLUDED = {"speedrun/run-tampered", "speedrun/run-garbage", "speedrun/run-badtype", "speedrun/run-future", "other/run-misfiled"}


class _RowParser(HTMLParser):
    """Collects (data-run-id, text) of leaderboard rows and all <script> tags."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.scripts: list[dict[str, str | None]] = []
        self._row: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
        if tag == "tr" and "lb-row" in (attributes.get("class") or ""):
            self._row = {k: v or "" for k, v in attributes.items()}
            self._row["text"] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row["text"] += data


def parse_rows(html: str) -> _RowParser:
    parser = _RowParser()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    subs = build_fixture_submissions(root)
    pins = {"spec_version": "1", "code_sha256": "a" * 64}
    report = build_site(subs, root / "site", pins=pins, rank_rules=False)
    return root / "site", report, subs


def test_build_succeeds_and_sorts_rows_by_cost(site):
    out, report, _ = site
    assert [b.preset for b in report.boards] == ["speedrun"]
    rows = report.boards[0].rows
    assert [r.run_id for r in rows] == EXPECTED_ORDER
    assert [r.rank for r in rows] == [1, 2, 3]
    assert rows == sorted(rows, key=lambda r: r.usd)
    html = (out / "index.html").read_text()
    assert [r["data-run-id"] for r in parse_rows(html).rows] == EXPECTED_ORDER


def test_tampered_and_malformed_are_excluded_with_reasons(site):
    out, report, _ = site
    reasons = {e.submission: e.reason for e in report.excluded}
    assert set(reasons) == EXCLUDED
    assert "[manifest]" in reasons["speedrun/run-tampered"] and "result.json" in reasons["speedrun/run-tampered"]
    assert "manifest.json is missing" in reasons["speedrun/run-garbage"]
    assert "core_label" in reasons["speedrun/run-badtype"]
    assert "schema_version 99" in reasons["speedrun/run-future"]
    assert "preset" in reasons["other/run-misfiled"]
    excluded_html = (out / "excluded.html").read_text()
    index_html = (out / "index.html").read_text()
    for name in EXCLUDED:
        assert name in excluded_html and name in index_html
        assert name.split("/")[1] not in [r["data-run-id"] for r in parse_rows(index_html).rows]
    data = json.loads((out / "leaderboard.json").read_text())
    assert {e["submission"] for e in data["excluded"]} == EXCLUDED


def test_json_and_csv_match_html_rows_and_order(site):
    out, _, _ = site
    html_rows = parse_rows((out / "index.html").read_text()).rows
    data = json.loads((out / "leaderboard.json").read_text())
    json_rows = [r for board in data["boards"] for r in board["rows"]]
    csv_rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert [r["run_id"] for r in json_rows] == [r["data-run-id"] for r in html_rows] == [r["run_id"] for r in csv_rows]
    for h, j, c in zip(html_rows, json_rows, csv_rows):
        assert h["data-hardware"] == j["hardware"]
        assert h["data-gpus"] == str(j["gpus"]) == c["gpus"]
        assert h["data-price-kind"] == j["price_kind"] == c["price_kind"]
        assert float(c["usd"]) == pytest.approx(j["usd"], rel=1e-12)
        assert int(c["rank"]) == j["rank"]
        assert (out / j["page"]).is_file()


def test_row_contents_labels_energy_and_badges(site):
    out, report, _ = site
    by_id = {r["data-run-id"]: r["text"] for r in parse_rows((out / "index.html").read_text()).rows}
    cheap = " ".join(by_id["run-cheap"].split())
    assert "CORE-offline-18" in cheap  # offline subset never shows as plain CORE
    assert "n/a" in cheap  # energy unknown, ChatCORE missing
    assert "spot" in cheap and "1xNVIDIA-A100-80GB" in cheap
    mid = " ".join(by_id["run-mid"].split())
    assert XSS_LABEL in mid and "8xNVIDIA-H100-80GB-HBM3" in mid and "rentable" in mid
    assert "signature" in mid and "pinned spec" in mid
    rows = {r.run_id: r for b in report.boards for r in b.rows}
    assert rows["run-cheap"].core_label == "CORE-offline-18" and rows["run-cheap"].energy_kwh is None
    assert rows["run-mid"].energy_kwh == pytest.approx((30 + 3600 + 240) * 5600 / 3.6e6)
    assert rows["run-mid"].pins == "match" and rows["run-mid"].signature == "verified"


def test_pins_mismatch_and_not_checked(tmp_path, monkeypatch):
    subs = tmp_path / "submissions"
    key_dir = tmp_path / "keys"
    submit_bundle(make_bundle(tmp_path / "w", make_result("r1", rate=2.0, pretrain_s=60.0), key_dir), subs, pins=False)
    # Without a pins file the build uses the pins nanobench ships for the preset: the fixture's made-up
    # workload hashes do not match the real speedrun pins.
    shipped = build_site(subs, tmp_path / "site0", rank_rules=False)
    assert shipped.boards[0].rows[0].pins == "mismatch"
    import bench.workload_identity as identity

    monkeypatch.setattr(identity, "PINS_DIR", tmp_path / "no-pins")  # a preset nanobench ships no pins for
    unpinned = build_site(subs, tmp_path / "site1", rank_rules=False)
    assert unpinned.boards[0].rows[0].pins == "not checked"
    assert "spec not checked" in (tmp_path / "site1" / "index.html").read_text()
    mismatched = build_site(subs, tmp_path / "site2", pins={"code_sha256": "0" * 64}, rank_rules=False)
    row = mismatched.boards[0].rows[0]
    assert row.pins == "mismatch" and "code_sha256" in row.pins_detail
    assert "spec differs" in (tmp_path / "site2" / "index.html").read_text()


def test_every_submitted_string_is_escaped(site):
    out, _, _ = site
    index = (out / "index.html").read_text()
    page = (out / "s" / "speedrun" / "run-mid" / "index.html").read_text()
    for html in (index, page):
        assert XSS_LABEL not in html
        assert "&lt;script&gt;alert(&#34;label&#34;)&lt;/script&gt;" in html
        assert [s.get("src") for s in parse_rows(html).scripts] in (["static/filters.js"], [])
        assert "Content-Security-Policy" in html and "script-src 'self'" in html  # inline scripts blocked too
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;quoted&#34;" in page


def test_submission_page_has_report_chart_system_and_raw_files(site):
    out, _, _ = site
    page_dir = out / "s" / "speedrun" / "run-mid"
    page = (page_dir / "index.html").read_text()
    assert "<h2>Report card</h2>" in page and '<table class="md-table">' in page
    assert "NVIDIA H100 80GB HBM3" in page and "cpu.model" in page
    svg = (page_dir / "phases.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for rel in ("result.json", "manifest.json", "manifest.sig", "report.md", "logs/pretrain.log", "submission.json"):
        assert (page_dir / "files" / safe_file_name(rel)).is_file(), rel  # manifest.sig is served as manifest.sig.txt
        assert f'href="files/{safe_file_name(rel)}"' in page
    assert not (page_dir / "files" / "artifacts").exists()
    pareto = (out / "plots" / "pareto-speedrun.svg").read_text()
    assert "<svg" in pareto
    pricey = (out / "s" / "speedrun" / "run-pricey" / "index.html").read_text()
    assert "submission.json: submission.json is not valid JSON" in pricey


def test_markdown_renderer_escapes_and_renders_tables():
    html = str(render_markdown("# Title <b>\n\n| a | b |\n|---|---|\n| <script>x</script> | **bold** |\n\n- item `code`\n"))
    assert "<h2>Title &lt;b&gt;</h2>" in html
    assert "<td>&lt;script&gt;x&lt;/script&gt;</td>" in html and "<strong>bold</strong>" in html
    assert "<th>a</th>" in html and "<li>item <code>code</code></li>" in html
    assert "<script>" not in html


def test_pareto_front_and_safe_file_names():
    # (3, 4) is dominated by (2, 3); equal points do not dominate each other
    assert pareto_front([(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (4.0, 1.0), (2.0, 3.0)]) == [0, 1, 4, 3]
    assert safe_file_name("logs/x.html") == "logs/x.html.txt" and safe_file_name("power.csv") == "power.csv"


def test_build_refuses_foreign_out_dir_and_replaces_its_own(tmp_path):
    subs = tmp_path / "submissions"
    subs.mkdir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(SiteError):
        build_site(subs, foreign, rank_rules=False)
    assert (foreign / "precious.txt").read_text() == "keep me"
    out = tmp_path / "site"
    build_site(subs, out, rank_rules=False)
    (out / "stale.html").write_text("old")
    report = build_site(subs, out, rank_rules=False)
    assert report.rows == 0 and not (out / "stale.html").exists()
    assert "No verified submissions yet" in (out / "index.html").read_text()
    assert json.loads((out / "leaderboard.json").read_text())["boards"] == []


def test_cli_build(tmp_path, capsys):
    """The CLI applies every ranking rule: a real, complete, registered bundle ranks; a broken one is excluded."""
    from tests.bench.real_bundle import file_by_hand, load_result, real_bundle, register_key

    subs = tmp_path / "submissions"
    key_dir = tmp_path / "keys"
    run = real_bundle(tmp_path / "w", key_dir, run_id="cli-run", rate=2.0)
    file_by_hand(run, subs)
    register_key(subs, key_dir)
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps(load_result(run)["workload"]))
    (subs / "smoke" / "broken").mkdir()
    out = tmp_path / "site"
    assert main(["leaderboard", "build", "--submissions", str(subs), "--out", str(out), "--pins", str(pins)]) == 0
    captured = capsys.readouterr()
    assert "1 submission(s)" in captured.out and "excluded smoke/broken" in captured.err
    assert (out / "index.html").is_file() and (out / "leaderboard.csv").is_file()
