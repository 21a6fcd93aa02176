"""bench.compare and `nanobench compare`: every format parses, ratios are against the first input,
forecasts are marked, scores with different labels never share a row."""

from __future__ import annotations

import csv
import io
import json

import pytest

from bench.cli import main
from bench.compare import CompareError, compare, comparison_rows, load_entry, render

try:
    from tests.bench.test_leaderboard import make_result
except ImportError:
    from test_leaderboard import make_result


def _write(tmp_path, name, result):
    run = tmp_path / name
    run.mkdir()
    (run / "result.json").write_text(json.dumps(result))
    return run


@pytest.fixture
def runs(tmp_path):
    a = _write(tmp_path, "a", make_result("run-a", rate=10.0, pretrain_s=3600.0, energy=False))
    # twice the hourly rate, same times: every USD figure doubles, every time stays
    b = _write(tmp_path, "b", make_result("run-b", rate=20.0, pretrain_s=3600.0, energy=False, core_label="CORE-offline-18"))
    forecast = make_result("fc-1", rate=5.0, pretrain_s=7200.0, energy=False, kind="forecast")
    c = tmp_path / "forecast.json"
    c.write_text(json.dumps(forecast))
    return a, b, c


def _row(rows, metric):
    return next(r for r in rows if r["metric"] == metric)


def test_json_ratios_against_the_first(runs):
    a, b, c = runs
    data = json.loads(compare([str(a), str(b), str(c)], fmt="json"))
    assert [e["name"] for e in data["entries"]] == ["run-a", "run-b", "FORECAST fc-1"]
    assert [e["kind"] for e in data["entries"]] == ["measured", "measured", "forecast"]
    cost = _row(data["rows"], "cost")
    assert cost["ratios"][0] == 1.0 and cost["ratios"][1] == pytest.approx(2.0, rel=1e-12)
    minutes = _row(data["rows"], "time")
    assert minutes["ratios"][1] == pytest.approx(1.0) and minutes["values"][0] == pytest.approx((30 + 3600 + 240) / 60)
    assert minutes["ratios"][2] == pytest.approx((30 + 7200 + 240) / (30 + 3600 + 240))
    assert _row(data["rows"], "pretrain cost")["ratios"][1] == pytest.approx(2.0)
    assert _row(data["rows"], "pretrain time")["values"][0] == pytest.approx(60.0)
    # no input recorded energy: no all-n/a row, the metric is listed as not recorded instead
    assert not [r for r in data["rows"] if r["metric"] == "energy (counted)"]
    assert "energy (counted)" in data["not_recorded"] and "pretrain energy" in data["not_recorded"]
    assert all(any(v is not None for v in r["values"]) for r in data["rows"])
    assert [e["hardware"] for e in data["entries"]][0] == "8 x NVIDIA H100 80GB HBM3"
    # different CORE labels: separate rows, no ratio across them
    assert _row(data["rows"], "CORE")["values"][1] is None
    assert _row(data["rows"], "CORE-offline-18")["values"] == [None, 0.22, None]
    assert _row(data["rows"], "CORE-offline-18")["ratios"] == [None, None, None]
    assert _row(data["rows"], "throughput")["unit"] == "tok/s" and _row(data["rows"], "MFU")["values"][0] == 0.4


def test_csv_parses_with_ratio_columns(runs):
    a, b, _ = runs
    rows = list(csv.DictReader(io.StringIO(compare([str(a), str(b)], fmt="csv"))))
    assert list(rows[0]) == ["metric", "unit", "run-a", "run-b", "run-b ratio"]
    cost = next(r for r in rows if r["metric"] == "cost")
    assert float(cost["run-b"]) == pytest.approx(2 * float(cost["run-a"]))
    assert float(cost["run-b ratio"]) == pytest.approx(2.0)
    phase_metrics = [r["metric"] for r in rows if r["metric"].startswith("pretrain")]
    assert phase_metrics == ["pretrain time", "pretrain cost"]  # pretrain energy: recorded by neither
    assert rows[0]["metric"] == "hardware" and rows[0]["run-a"] == "8 x NVIDIA H100 80GB HBM3"


def test_table_and_markdown_mark_forecasts(runs):
    a, _, c = runs
    table = compare([str(a), str(c)], fmt="table")
    assert "FORECAST fc-1" in table and "cost" in table and "1.93x" in table
    markdown = compare([str(a), str(c)], fmt="markdown")
    lines = markdown.splitlines()
    assert lines[0].startswith("| metric") and "FORECAST fc-1" in lines[0] and set(lines[1]) <= set("|- ")
    assert any(line.startswith("| time ") and "1.93x" in line for line in lines)


def test_submission_ids_and_labels(tmp_path, runs, monkeypatch):
    a, b, _ = runs
    subs = tmp_path / "submissions" / "speedrun" / "run-b"
    subs.mkdir(parents=True)
    (subs / "result.json").write_text((b / "result.json").read_text())
    (subs / "submission.json").write_text(json.dumps({"label": "8x [bold]H100[/bold] | pipe"}))
    entry = load_entry("speedrun/run-b", tmp_path / "submissions")
    assert entry.label == "8x [bold]H100[/bold] | pipe" and not entry.forecast
    table = render([load_entry(str(a)), entry], "table")
    assert "[bold]H100[/bold]" in table  # rich markup in a label is shown, not interpreted


def test_markdown_escapes_pipes(tmp_path, runs):
    a, _, _ = runs
    piped = _write(tmp_path, "p", make_result("run|x", rate=10.0, pretrain_s=60.0))
    header = render([load_entry(str(a)), load_entry(str(piped))], "markdown").splitlines()[0]
    assert "run\\|x" in header and header.count(" | ") == 4


def test_errors(tmp_path, runs, capsys):
    a, _, _ = runs
    with pytest.raises(CompareError):
        compare([str(a), str(tmp_path / "missing")])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "result.json").write_text("[1]")
    with pytest.raises(CompareError, match="not a JSON object"):
        load_entry(str(bad))
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 1
    assert "error" in capsys.readouterr().err
    assert main(["compare", str(a)]) == 2


def test_cli_formats(runs, capsys):
    a, b, _ = runs
    for fmt in ("table", "csv", "json", "markdown"):
        assert main(["compare", str(a), str(b), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "run-b" in out
    assert main(["compare", str(a), str(b), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline"] == "run-a"


def test_malformed_fields_show_as_missing(tmp_path):
    a = _write(tmp_path, "a", make_result("run-a", rate=10.0, pretrain_s=60.0))
    weird = _write(tmp_path, "w", {"run_id": "w", "triple": "oops", "phases": [1, {"name": "pretrain", "seconds": "x"}], "metrics": None})
    rows = comparison_rows([load_entry(str(a)), load_entry(str(weird))])
    assert all(r.values[1] is None and r.ratios[1] is None for r in rows)


def test_ratios_in_words_marked_better_or_worse(tmp_path):
    base = _write(tmp_path, "base", make_result("run-base", rate=10.0, pretrain_s=3600.0, energy=False))
    # faster hardware at a lower total cost: 2.3x faster, cheaper
    quick = _write(tmp_path, "quick", make_result("run-quick", rate=10.0, pretrain_s=1412.0, energy=False, gpus=1,
                                                     gpu_name="NVIDIA B200", machine_id="1xNVIDIA-B200"))
    markdown = compare([str(base), str(quick)], fmt="markdown")
    lines = {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ")}
    assert "8 x NVIDIA H100 80GB HBM3" in lines["hardware"] and "1 x NVIDIA B200" in lines["hardware"]
    minutes_base = (30 + 3600 + 240) / 60
    minutes_quick = (30 + 1412 + 240) / 60
    assert f"{minutes_base / minutes_quick:.2f}x faster (better)" in lines["time"]
    assert f"{minutes_quick / minutes_base:.2f}x the cost (better)" in lines["cost"]
    assert "1 h 04 min" in lines["time"]  # human-readable minutes
    assert "$10.75" in lines["cost"] and "$4.67" in lines["cost"]  # dollars, two decimals
    assert "40.0%" in lines["MFU"] and "1,000,000" in lines["throughput"]
    assert "same" in lines["CORE"]
    slow = compare([str(quick), str(base)], fmt="markdown")
    time_line = next(line for line in slow.splitlines() if line.startswith("| time "))
    assert f"{minutes_base / minutes_quick:.2f}x slower (worse)" in time_line
    assert "n/a" not in next(line for line in slow.splitlines() if line.startswith("| cost "))
    assert "Not recorded by any input: energy (counted)" in slow
    table = compare([str(base), str(quick)], fmt="table")
    assert "faster (better)" in table and "hardware" in table and "not recorded by any input" in table
