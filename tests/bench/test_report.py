"""bench.report: the markdown report card shows the triple, phases, scores, system, pricing, determinism."""

from __future__ import annotations

from bench.report import render_report

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
    assert "download: energy n/a: GPU: NVML init failed" in phases
    scores = _section(text, "Scores")
    assert "hellaswag" in scores and "GSM8K" in scores and "**ChatCORE**" in scores
    assert "8 x NVIDIA H100 80GB HBM3 (80 GiB)" in _section(text, "System")
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
