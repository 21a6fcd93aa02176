"""Busy-machine detection (bench/run_conditions.py), the resume record, and `run --repeat` summaries (bench/repeat.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import pytest

from bench.commands.run import resume_record
from bench.repeat import summarize, to_markdown
from bench.run_conditions import BUSY_STEP_CV, LoadSampler, classify, load_before, step_time_stats


def _progress(path, dts, start=0):
    with open(path, "w") as fh:
        for i, dt in enumerate(dts, start):
            fh.write(json.dumps({"time_ms": i, "key": "step", "value": i, "metadata": {"dt": dt}}) + "\n")
        fh.write("not json\n")
    return path


def test_step_time_stats_skip_warmup_and_measure_spread(tmp_path):
    p = _progress(tmp_path / "pretrain.jsonl", [9.0] * 11 + [1.0, 1.0, 1.0, 3.0])
    s = step_time_stats(p, skip_steps=10)
    assert s["steps"] == 4 and s["p50"] == 1.0 and s["mean"] == 1.5
    assert s["p95"] == pytest.approx(2.7)
    assert s["cv"] == pytest.approx(((3 * 0.25 + 2.25) / 4) ** 0.5 / 1.5)
    assert step_time_stats(tmp_path / "missing.jsonl") is None


def test_quiet_run_is_not_busy_and_each_signal_marks_it_busy():
    quiet_steps = {"p50": 1.6, "p95": 1.7, "cv": 0.03, "steps": 89, "mean": 1.6}
    before = {"cpu_busy_fraction": 0.02, "loadavg_1m": 0.1}
    during = {"foreign_cpu_fraction_mean": 0.01}
    c = classify(before, during, quiet_steps, allow_busy=False)
    assert c["busy"] is False and c["reason"] == "quiet" and c["allow_busy"] is False
    assert classify({"cpu_busy_fraction": 0.9}, during, quiet_steps, allow_busy=False)["busy"]
    busy = classify(before, {"foreign_cpu_fraction_mean": 0.6}, quiet_steps, allow_busy=True)
    assert busy["busy"] and "other processes used 60%" in busy["reason"] and busy["allow_busy"] is True
    jittery = classify(before, during, {**quiet_steps, "cv": BUSY_STEP_CV + 0.5}, allow_busy=False)
    assert jittery["busy"] and "CV" in jittery["reason"]


def test_load_sampler_subtracts_the_runs_own_cpu_time():
    """2 cores over 10 s = 20 CPU-seconds; the machine was busy 15 of them, the run itself used 10:
    other processes used 5 / 20 = 25% of the machine."""
    t = {"wall": 0.0, "busy": 0.0, "own": 0.0}
    s = LoadSampler(interval=3600, busy_seconds=lambda: t["busy"], own_seconds=lambda: t["own"], clock=lambda: t["wall"])
    s.cores = 2
    s.start()
    t.update(wall=10.0, busy=15.0, own=10.0)
    s._sample()
    t.update(wall=20.0, busy=35.0, own=20.0)  # a second window: 10 foreign of 20 = 50%
    s._sample()
    out = s.stop()
    assert out["samples"] == 2
    assert out["foreign_cpu_fraction_mean"] == pytest.approx(0.375) and out["foreign_cpu_fraction_max"] == pytest.approx(0.5)


def test_own_cpu_seconds_include_finished_children():
    """The stages are child processes that exit between samples: their CPU time must still count as the run's."""
    from bench.run_conditions import own_cpu_seconds

    before = own_cpu_seconds()
    burn = "import time\nwhile time.process_time() < 0.4: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    assert own_cpu_seconds() - before >= 0.35  # clock-tick granularity (10 ms)
    b = load_before(seconds=0.2)
    assert 0.0 <= b["cpu_busy_fraction"] <= 1.0 and b["cores"] >= 1


def test_resume_record_counts_carried_seconds():
    phases = {"tokenizer": {"carried_seconds": 0.0}, "pretrain": {"carried_seconds": 81.5}, "sft": {}}
    assert resume_record(phases, resumes=1) == {"resumed": True, "resumes": 1, "carried_seconds": 81.5, "resumed_phases": ["pretrain"]}
    assert resume_record({"pretrain": {"carried_seconds": 0.0}}, resumes=0)["resumed"] is False


def test_repeat_summary_reports_mean_stdev_min():
    def result(i, minutes, core, busy=False):
        return {"run_id": f"r{i}", "preset": "smoke", "triple": {"minutes": minutes, "usd": minutes / 60 * 24, "core": core},
                "metrics": {"val_bpb": 2.0}, "phases": [{"name": "pretrain", "seconds": minutes * 30}],
                "run_conditions": {"busy": busy, "step_time": {"cv": 0.03}}}

    s = summarize([result(1, 5.0, 0.1), result(2, 6.0, 0.1), result(3, 7.0, 0.1, busy=True)])
    m = s["figures"]["minutes (counted)"]
    assert (m["mean"], m["stdev"], m["min"], m["max"], m["n"]) == (6.0, 1.0, 5.0, 7.0, 3)
    assert s["figures"]["CORE"]["stdev"] == 0.0
    assert s["figures"]["pretrain s"]["mean"] == 180.0
    assert s["figures"]["ChatCORE"]["n"] == 0
    assert s["busy_runs"] == ["r3"]
    md = to_markdown(s)
    assert "| minutes (counted) | 6.000 | 1.000 | 5.000 | 7.000 | 3 |" in md and "ChatCORE" not in md


def test_repeat_runs_n_times_and_writes_the_summary(tmp_path, monkeypatch, capsys):
    import argparse

    from bench.repeat import run_repeated

    def fake_once(args):
        d = tmp_path / "runs" / args.run_id
        d.mkdir(parents=True)
        n = int(args.run_id[-1])
        (d / "result.json").write_text(json.dumps({"run_id": args.run_id, "preset": "smoke", "triple": {"minutes": float(n)}}))
        calls.append((args.run_id, args.skip_preflight))
        return 0

    calls = []
    args = argparse.Namespace(config=None, preset="smoke", run_id="base", runs_dir=str(tmp_path / "runs"), repeat=3)
    assert run_repeated(args, fake_once) == 0
    assert calls == [("base-r1", False), ("base-r2", True), ("base-r3", True)]
    summary = json.loads((tmp_path / "runs" / "base-repeat.json").read_text())
    assert summary["figures"]["minutes (counted)"]["mean"] == 2.0
    assert (tmp_path / "runs" / "base-repeat.md").is_file()
    assert "minutes (counted)" in capsys.readouterr().out


def test_repeat_flag_is_checked(capsys):
    from bench.cli import main

    assert main(["run", "--preset", "smoke", "--hourly-rate", "1", "--repeat", "0"]) == 2
    assert "--repeat must be >= 1" in capsys.readouterr().err
    assert main(["run", "--hourly-rate", "1", "--repeat", "2", "--resume", "somewhere"]) == 2
    assert "--repeat cannot be combined with --resume" in capsys.readouterr().err
