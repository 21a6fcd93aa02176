"""bench.power / bench.power_sources: energy per phase from NVML counters, samples, RAPL; null + reason when missing."""

from __future__ import annotations

import csv
import sys
import time

import pytest

from bench import power
from bench.power import PowerMonitor
from bench.power_sources import RaplReader, decode_throttle_reasons, load_nvml

try:
    from tests.bench.harness_fixtures import FakeNvml, ManualClock
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from harness_fixtures import FakeNvml, ManualClock


def _manual_monitor(fake: FakeNvml | bool, clock: ManualClock, **kw) -> PowerMonitor:
    """A monitor driven by hand (no thread): open sources, then begin/sample/end with a manual clock."""
    mon = PowerMonitor(interval_s=0.1, nvml=fake, rapl_root=kw.pop("rapl_root", None), clock=clock, **kw)
    mon.open_sources()
    return mon


def _run_phase(mon: PowerMonitor, clock: ManualClock, name: str, seconds: float, samples: int) -> dict:
    mon.begin_phase(name)
    for _ in range(samples):
        clock.advance(seconds / (samples + 1))
        mon.sample_once()
    clock.advance(seconds / (samples + 1))
    return mon.end_phase()


def test_no_nvml_library_gives_null_energy_with_reason():
    """The real path on this machine: pynvml is installed but there is no driver/GPU."""
    gpus_module, reason = load_nvml()
    if gpus_module is not None:
        pytest.skip("NVML is actually available here")
    mon = PowerMonitor(interval_s=0.05, rapl_root=None)
    mon.start()
    with mon.phase("tokenizer") as ph:
        time.sleep(0.05)
    summary = mon.stop()
    r = ph.result
    assert r["energy_joules"] is None and r["avg_power_watts"] is None
    assert r["energy_status"] == "unavailable"
    assert "NVML" in r["unavailable_reason"] and "RAPL disabled" in r["unavailable_reason"]
    assert r["seconds"] > 0
    assert summary["sources"]["gpu"]["available"] is False
    assert "NVML" in summary["sources"]["gpu"]["unavailable_reason"]


def test_pynvml_not_importable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    module, reason = load_nvml()
    assert module is None and "not importable" in reason


def test_nvml_init_failure_reason():
    clock = ManualClock()
    mon = _manual_monitor(FakeNvml([300.0], clock, init_error="Driver Not Loaded"), clock)
    r = _run_phase(mon, clock, "pretrain", 2.0, 3)
    assert r["energy_joules"] is None
    assert "Driver Not Loaded" in r["unavailable_reason"]


def test_counter_energy_and_crosscheck_two_gpus():
    clock = ManualClock()
    fake = FakeNvml([300.0, 200.0], clock)
    mon = _manual_monitor(fake, clock)
    r = _run_phase(mon, clock, "pretrain", 10.0, 9)
    assert r["energy_source"] == "nvml_counter"
    assert r["energy_status"] == "measured" and r["unavailable_reason"] is None
    assert r["energy_joules"] == pytest.approx(5000.0, rel=1e-6)
    assert r["gpu_energy_joules"] == pytest.approx([3000.0, 2000.0], rel=1e-6)
    assert r["avg_power_watts"] == pytest.approx(500.0, rel=1e-6)
    assert r["sampled_energy_joules"] == pytest.approx(5000.0, rel=1e-9)
    assert abs(r["crosscheck_rel_diff"]) < 1e-6
    assert r["samples"] == 11  # 9 sampler ticks + 2 boundary samples
    assert r["gpu_max_temp_c"] == [60.0, 61.0]
    assert r["gpu_avg_sm_clock_mhz"] == [1980.0, 1980.0]
    assert r["gpu_throttle_reasons"] == ["sw_power_cap"]
    assert mon.results["pretrain"] is r


def test_crosscheck_reports_disagreement():
    """Samples that miss a power spike disagree with the counter; the relative difference says by how much."""
    clock = ManualClock()
    fake = FakeNvml([100.0], clock)
    mon = _manual_monitor(fake, clock)
    mon.begin_phase("pretrain")
    clock.advance(1.0)
    mon.sample_once()
    # the counter keeps integrating: jump it by 100 J that no sample saw
    fake._t0 -= 1.0
    clock.advance(1.0)
    r = mon.end_phase()
    assert r["energy_joules"] == pytest.approx(300.0, rel=1e-6)
    assert r["sampled_energy_joules"] == pytest.approx(200.0, rel=1e-9)
    assert r["crosscheck_rel_diff"] == pytest.approx(1 / 3, rel=1e-6)


def test_counter_unsupported_falls_back_to_integrated_samples():
    clock = ManualClock()
    mon = _manual_monitor(FakeNvml([250.0], clock, counter_supported=False), clock)
    r = _run_phase(mon, clock, "sft", 4.0, 3)
    assert r["energy_source"] == "nvml_power_samples"
    assert r["energy_joules"] == pytest.approx(1000.0, rel=1e-9)
    assert r["crosscheck_rel_diff"] is None
    assert "unsupported" in mon.summary()["sources"]["gpu"]["energy_counter_unsupported"][0]


def test_nvml_error_mid_phase_marks_energy_partial():
    clock = ManualClock()
    fake = FakeNvml([300.0], clock)
    mon = _manual_monitor(fake, clock)
    mon.begin_phase("pretrain")
    clock.advance(1.0)
    mon.sample_once()
    fake.fail_power_after = fake.power_calls  # every later power read raises
    clock.advance(1.0)
    mon.sample_once()
    clock.advance(1.0)
    r = mon.end_phase()
    assert r["energy_status"] == "partial"
    assert "GPU is lost" in r["unavailable_reason"]
    assert r["energy_joules"] == pytest.approx(900.0, rel=1e-6)  # the counter still covers the phase
    assert r["nvml_errors"]


def test_counter_and_power_both_failing_leaves_partial_sampled_energy():
    clock = ManualClock()
    fake = FakeNvml([300.0], clock)
    mon = _manual_monitor(fake, clock)
    mon.begin_phase("pretrain")
    clock.advance(1.0)
    mon.sample_once()
    fake.fail_energy = True
    fake.fail_power_after = fake.power_calls
    clock.advance(1.0)
    r = mon.end_phase()
    assert r["energy_status"] == "partial"
    assert r["energy_source"] == "nvml_power_samples"
    assert r["energy_joules"] == pytest.approx(300.0)  # only the second that was sampled


def test_everything_failing_is_null_not_zero():
    clock = ManualClock()
    fake = FakeNvml([300.0], clock)
    mon = _manual_monitor(fake, clock)
    fake.fail_energy = True
    fake.fail_power_after = 0
    r = _run_phase(mon, clock, "pretrain", 2.0, 2)
    assert r["energy_joules"] is None and r["energy_status"] == "unavailable"
    assert "Unknown Error" in r["unavailable_reason"] or "GPU is lost" in r["unavailable_reason"]


def _fake_rapl(root, values, max_range=1000):
    pkg = root / "intel-rapl:0"
    sub = root / "intel-rapl:0:0"  # a subdomain (core): must not be double counted
    for d in (pkg, sub):
        d.mkdir(parents=True, exist_ok=True)
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
        (d / "energy_uj").write_text(f"{values}\n")
    return pkg / "energy_uj"


def test_rapl_wraparound(tmp_path):
    energy = _fake_rapl(tmp_path, 900)
    reader = RaplReader(tmp_path)
    assert reader.available and len(reader.domains) == 1
    assert reader.read() == 0.0
    energy.write_text("100\n")  # wrapped: 900 -> 1000 == 0 -> 100
    assert reader.read() == pytest.approx(200e-6)
    energy.write_text("600\n")
    assert reader.read() == pytest.approx(700e-6)


def test_rapl_missing_reason(tmp_path):
    reader = RaplReader(tmp_path / "nope")
    assert not reader.available and reader.read() is None
    assert "no RAPL" in reader.unavailable_reason


def test_cpu_only_machine_uses_rapl(tmp_path):
    energy = _fake_rapl(tmp_path, 0, max_range=10**12)
    clock = ManualClock()
    mon = _manual_monitor(False, clock, rapl_root=tmp_path)
    mon.begin_phase("tokenizer")
    energy.write_text(f"{50 * 10**6}\n")  # 50 J later
    clock.advance(2.0)
    mon.sample_once()
    energy.write_text(f"{80 * 10**6}\n")
    clock.advance(1.0)
    r = mon.end_phase()
    assert r["energy_source"] == "rapl" and r["energy_status"] == "measured"
    assert r["energy_joules"] == pytest.approx(80.0)
    assert r["cpu_energy_joules"] == pytest.approx(80.0)
    assert r["avg_power_watts"] == pytest.approx(80.0 / 3.0)


def test_gpu_machine_reports_rapl_separately(tmp_path):
    energy = _fake_rapl(tmp_path, 0, max_range=10**12)
    clock = ManualClock()
    mon = _manual_monitor(FakeNvml([100.0], clock), clock, rapl_root=tmp_path)
    mon.begin_phase("pretrain")
    energy.write_text(f"{30 * 10**6}\n")
    clock.advance(1.0)
    r = mon.end_phase()
    assert r["energy_joules"] == pytest.approx(100.0, rel=1e-6)
    assert r["cpu_energy_joules"] == pytest.approx(30.0)


def test_threaded_monitor_idle_baseline_phases_and_csv(tmp_path):
    fake = FakeNvml([150.0, 150.0], time.monotonic)
    csv_path = tmp_path / "power.csv"
    mon = PowerMonitor(interval_s=0.02, csv_path=csv_path, nvml=fake, rapl_root=None)
    mon.start(idle_baseline_s=0.1)
    assert mon.idle_baseline["power_watts"] == pytest.approx(300.0, rel=0.05)
    assert mon.idle_baseline["gpu_power_watts"] == pytest.approx([150.0, 150.0], rel=0.05)
    with mon.phase("tokenizer") as tok:
        fake.watts = [250.0, 250.0]
        time.sleep(0.15)
    ended = mon.mark("pretrain")
    assert ended is None  # nothing was open
    time.sleep(0.05)
    pre = mon.mark(None)
    summary = mon.stop()
    assert tok.result["energy_source"] == "nvml_counter"
    assert tok.result["energy_above_idle_joules"] < tok.result["energy_joules"]
    assert pre["phase"] == "pretrain" and pre["energy_joules"] > 0
    assert [p["phase"] for p in summary["phases"]] == ["tokenizer", "pretrain"]
    assert summary["sampler"]["samples"] >= 3
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"gpu0_w", "gpu1_w", "gpu_total_w", "cpu_w", "cpu_util_pct", "rss_bytes", "phase"} <= set(rows[0])
    phases = {r["phase"] for r in rows}
    assert {"_idle", "tokenizer", "pretrain"} <= phases
    assert all(r["cpu_w"] == "" for r in rows)  # no RAPL: empty cells, never "0"
    assert any(float(r["gpu_total_w"]) == pytest.approx(500.0) for r in rows if r["phase"] == "tokenizer")


def test_phase_misuse_raises():
    clock = ManualClock()
    mon = _manual_monitor(False, clock)
    with pytest.raises(RuntimeError):
        mon.end_phase()
    mon.begin_phase("a")
    with pytest.raises(RuntimeError):
        mon.begin_phase("b")


def test_decode_throttle_reasons():
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert decode_throttle_reasons(0x10000) == ["0x10000"]


def test_invalid_interval():
    with pytest.raises(ValueError):
        power.PowerMonitor(interval_s=0)
