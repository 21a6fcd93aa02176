"""bench.report: the markdown report card shows the triple, phases, scores, system, pricing, determinism."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import ReportExtras, render_report, write_report

try:
    from tests.bench.harness_fixtures import synthetic_result
except ImportError:
    from harness_fixtures import synthetic_result


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_report_sections_and_numbers():
    result = synthetic_result()
    result["system"] = {
        "machine_id": "8xNVIDIA-H100-80GB-HBM3",
        "cpu": {"model": "Intel Xeon Platinum 8480+", "physical_cores": 112, "logical_cores": 224},
        "gpus": {"devices": [{"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 * 2**30}] * 8,
                 "driver_version": "570.86.15", "cuda_driver_version": "12.8"},
        "memory": {"total_bytes": 2 * 2**40},
        "software": {"python": "3.11.7", "torch": "2.9.0", "nccl": "2.27.3"},
        "source": {"git_commit": "0123456789abcdef0123", "git_dirty": True},
    }
    text = render_report(result)
    assert text.startswith("# nanobench report card: 20261125-120000-abcd")
    assert "**speedrun**" in text and "git 0123456789ab (dirty)" in text
    res = _section(text, "Result")
    assert "26.42" in res and "65.2" in res and "0.2219" in res and "0.0884" in res
    phases = _section(text, "Phases")
    assert "| download" in phases and "| no " in phases
    assert "7,500.00" in phases  # pretrain energy in kJ
    assert "2,083" in phases  # 7.5e6 J / 3600.25 s average watts
    assert "- energy unavailable: GPU: NVML init failed (download)" in phases
    scores = _section(text, "Scores")
    assert "hellaswag" in scores and "GSM8K" in scores and "**ChatCORE (centered mean)**" in scores
    system = _section(text, "System")
    assert "8 x NVIDIA H100 80GB HBM3" in system and "80 GiB each" in system and "570.86.15 / 12.8" in system
    pricing = _section(text, "Pricing")
    assert "https://example.test/pricing" in pricing and "on-demand" in pricing and "2026-11-25" in pricing
    assert "| class " in _section(text, "Determinism") and "close" in _section(text, "Determinism")
    assert "aaaaaaaaaaaaaaaa..." in _section(text, "Workload")


def test_missing_values_are_na_not_zero():
    result = synthetic_result(metrics={"val_bpb": None}, determinism={})
    result["triple"].update(core=None, chatcore=None, core_label="CORE-offline-18")
    result["phases"][1]["energy_joules"] = None
    text = render_report(result)
    res = _section(text, "Result")
    core_line = [line for line in res.splitlines() if "CORE-offline-18" in line][0]
    assert "n/a" in core_line and "0.0" not in core_line
    assert "## Scores" not in text
    assert "not_checked" in _section(text, "Determinism")
    phases = _section(text, "Phases")
    total = [line for line in phases.splitlines() if "total (counted)" in line][0]
    assert "n/a" in total  # a counted phase with unknown energy: the energy total is unknown, not a sum


def test_minimal_result_renders():
    text = render_report({"run_id": "r1", "phases": [], "triple": {}})
    assert "# nanobench report card: r1" in text and "## Phases" in text


NVML = "GPU: NVML init failed: NVML Shared Library Not Found; CPU: no RAPL package domains under /sys/class/powercap"


def _cpu_result(**extra):
    result = synthetic_result(**extra)
    for p in result["phases"]:
        p.pop("energy_unavailable_reason", None)
        p.update(energy_joules=None, energy_status="unavailable", unavailable_reason=NVML)
    result["metrics"]["core"] = {"score": 0.1, "label": "CORE-offline-18", "tasks": {"arc_easy": 0.2, "piqa": 0.0},
                                 "task_details": {"arc_easy": {"n": 8}, "piqa": {"n": 8}}}
    result["metrics"]["chatcore"] = {"score": 0.14, "source": "sft", "tasks": {"ARC-Easy": 0.5, "GSM8K": 0.0}}
    result["metrics"]["mid_train"] = {"val_bpb": 2.63, "final_loss": 3.59}
    result["metrics"]["sft"] = {"final_loss": 2.26, "val_loss": 4.29}
    return result


def test_one_energy_line_for_a_source_missing_in_every_phase():
    result = _cpu_result()
    notes = [line for line in _section(render_report(result), "Phases").splitlines() if line.startswith("- energy")]
    assert notes == [f"- energy unavailable: {NVML} (all {len(result['phases'])} phases)"]


def test_header_flags_centered_totals_stage_table_and_few_examples_warning():
    result = _cpu_result(valid=False, validity_problems=["determinism diverged"])
    result["resume"] = {"resumed": True, "carried_seconds": 82.0}
    result["run_conditions"] = {"busy": True, "reason": "load average 3.1 on 2 cores"}
    extras = ReportExtras(started_unix=1795615485.0, finished_unix=1795615800.0, chat_examples=16)
    text = render_report(result, extras)
    header = text.split("## Result")[0]
    assert "- Valid: **NO**: determinism diverged" in header
    assert "- Wall clock: 2026-11-25 14:04:45 UTC to 2026-11-25 14:10:00 UTC" in header
    assert "- Resumed: yes, 82 s carried over" in header
    assert "**busy machine**" in header and "load average 3.1" in header
    assert "- Hardware: **" in header
    assert "| ChatCORE (centered)" in _section(text, "Result")
    stages = _section(text, "Stages")
    assert "| metric" in stages and "BASE" in stages and "MID" in stages and "SFT" in stages and "RL" in stages
    chat_line = next(line for line in stages.splitlines() if line.startswith("| ChatCORE (centered)"))
    cells = [c.strip() for c in chat_line.strip("|").split("|")]
    assert cells == ["ChatCORE (centered)", "-", "-", "0.1400", "-"]  # measured on the SFT model only
    bpb = next(line for line in stages.splitlines() if line.startswith("| val bpb"))
    assert "2.6300" in bpb
    scores = _section(text, "Scores")
    assert "**CORE-offline-18 (centered mean)**" in scores and "**ChatCORE (centered mean)**" in scores
    assert "CORE scored as few as 8 example(s) per task" in scores
    assert "ChatCORE scored as few as 8 example(s) per task" in scores  # 16 examples over 2 tasks


def test_no_warning_with_enough_examples_and_not_resumed():
    result = _cpu_result()
    result["metrics"]["core"]["task_details"] = {"arc_easy": {"n": 500}, "piqa": {"n": 1838}}
    text = render_report(result)
    assert "Warning" not in _section(text, "Scores").split("### ChatCORE")[0]
    assert "- Resumed: no" in text and "Machine load" not in text


def _write_progress(run: Path) -> None:
    (run / "progress").mkdir(parents=True)
    lines = [{"time_ms": 1_795_615_497_000 + i * 1000, "key": "step", "value": i,
              "metadata": {"loss": 8.0 - 0.1 * i, "total_steps": 20}} for i in range(20)]
    (run / "progress" / "pretrain.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{torn")
    rows = ["unix_time,t_s,phase,gpu_total_w,cpu_w,cpu_util_pct,rss_bytes,gpu_throttle"]
    rows += [f"{1795615497 + i * 0.5},{i * 0.5},{'pretrain' if i < 30 else 'base_eval'},,{40 + i % 5},90.0,1,"
             for i in range(60)]
    (run / "power.csv").write_text("\n".join(rows) + "\n")


def test_write_report_draws_pngs_and_renders_samples(tmp_path):
    run = tmp_path / "run"
    _write_progress(run)
    (run / "phases" / "chat_eval").mkdir(parents=True)
    (run / "phases" / "chat_eval" / "samples.json").write_text(json.dumps(
        [{"prompt": "Why is the sky blue?", "completion": "Rayleigh | scattering\nof light"}]))
    result = _cpu_result()
    write_report(run, result)
    for name in ("loss_curve.png", "power.png"):
        data = (run / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000
    text = (run / "report.md").read_text()
    assert "![Training loss per stage](loss_curve.png)" in text and "![Power over time](power.png)" in text
    samples = _section(text, "Sample generations")
    assert "Base model: not recorded." in samples
    assert "| Why is the sky blue? | Rayleigh \\| scattering of light |" in samples
    assert "- Wall clock: 2026-11-25 14:04:57 UTC to 2026-11-25 14:05:16 UTC" in text


def test_write_report_without_progress_or_power_says_not_recorded(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_report(run, _cpu_result())
    assert not (run / "loss_curve.png").exists() and not (run / "power.png").exists()
    text = (run / "report.md").read_text()
    assert "- Training loss per stage: not recorded" in text and "Chat model: not recorded." in text


def test_finalize_signs_the_plots(tmp_path, monkeypatch):
    from bench.bundle import bundle_files
    from bench.result import finalize

    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(tmp_path / "keys"))
    run = tmp_path / "run"
    _write_progress(run)
    finalize(run, _cpu_result(), key_dir=str(tmp_path / "keys"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert {"loss_curve.png", "power.png", "report.md"} <= set(manifest["files"]) <= set(bundle_files(run))
