"""Test helpers for the harness instruments: a fake NVML module and a synthetic run directory.

The fake implements the subset of pynvml's API that bench.power / bench.system call, with
configurable failures, and integrates its energy counter exactly from a shared clock so tests can
check counter-vs-samples arithmetic deterministically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


class FakeNVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


class ManualClock:
    """A clock tests advance by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class _Memory:
    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.free = total


class FakeNvml:
    """pynvml-shaped module. Power per GPU is constant; the energy counter is its exact integral."""

    NVMLError = FakeNVMLError

    def __init__(
        self,
        watts: list[float],
        clock: Callable[[], float],
        *,
        name: str = "NVIDIA H100 80GB HBM3",
        counter_supported: bool = True,
        init_error: str | None = None,
    ) -> None:
        self.watts = list(watts)
        self.clock = clock
        self.name = name
        self.counter_supported = counter_supported
        self.init_error = init_error
        self.power_calls = 0
        self.fail_power_after: int | None = None  # power reads after this many calls raise
        self.fail_energy = False  # counter reads raise (after the support probe)
        self.throttle_mask = 0x4  # sw_power_cap
        self._t0 = clock()
        self._energy_reads = 0
        self.initialised = False

    def nvmlInit(self) -> None:
        if self.init_error:
            raise FakeNVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        return len(self.watts)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self.power_calls += 1
        if self.fail_power_after is not None and self.power_calls > self.fail_power_after:
            raise FakeNVMLError("GPU is lost")
        return int(round(self.watts[handle] * 1000))

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if not self.counter_supported:
            raise FakeNVMLError("Not Supported")
        self._energy_reads += 1
        if self.fail_energy:
            raise FakeNVMLError("Unknown Error")
        return 7_000_000 + int(round(self.watts[handle] * (self.clock() - self._t0) * 1000))

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return 60 + handle

    def nvmlDeviceGetClockInfo(self, handle: int, clock_type: int) -> int:
        return 1980

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        return self.throttle_mask

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self.name

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return f"GPU-0000{handle}-fake"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Memory:
        return _Memory(80 * 2**30)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return 700_000

    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.86.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12080


def synthetic_result(**overrides: Any) -> dict[str, Any]:
    """A small, internally consistent result.json dict (costs computed with bench.cost)."""
    from bench import RESULT_SCHEMA_VERSION
    from bench.cost import Pricing, price_phases, triple

    pricing = Pricing(24.0, "https://example.test/pricing (8x H100 SXM)", "on-demand", "2026-11-25", 0.15)
    phases = [
        {"name": "download", "seconds": 30.5, "energy_joules": None, "counted": False,
         "energy_unavailable_reason": "GPU: NVML init failed"},
        {"name": "tokenizer", "seconds": 12.3, "energy_joules": 4100.0, "counted": True},
        {"name": "pretrain", "seconds": 3600.25, "energy_joules": 7.5e6, "counted": True},
        {"name": "base_eval", "seconds": 300.0, "energy_joules": 6.0e5, "counted": True},
    ]
    phases = price_phases(phases, pricing)
    metrics = {
        "val_bpb": 0.8123,
        "core": {"score": 0.2219, "tasks": {"hellaswag": 0.26, "arc_easy": 0.51}},
        "chatcore": {"score": 0.0884, "tasks": {"ARC-Easy": 0.3876, "GSM8K": 0.0455}},
        "tok_per_s": 1.1e6,
        "mfu": 0.42,
    }
    result = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "run_id": "20261125-120000-abcd",
        "preset": "speedrun",
        "created_utc": "2026-11-25T12:00:00Z",
        "nanobench_version": "0.1.0",
        "workload": {
            "spec_version": "1",
            "code_sha256": "a" * 64,
            "config_sha256": "b" * 64,
            "tokenizer_sha256": "c" * 64,
            "data_manifest_sha256": "d" * 64,
            "eval_data_sha256": "e" * 64,
            "checkpoints": {"base": "f" * 64},
        },
        "system": {"machine_id": "8xNVIDIA-H100-80GB-HBM3", "cpu": {"model": "Test CPU"}},
        "pricing": pricing.to_dict(),
        "phases": phases,
        "triple": triple(phases, 0.2219, 0.0884),
        "determinism": {"class": "close", "max_loss_diff": 1e-6},
        "metrics": metrics,
    }
    result.update(overrides)
    return result


def make_run_dir(root: Path, result: dict[str, Any] | None = None) -> Path:
    """A run directory shaped like the harness's, with a small artifacts/ tree (excluded from bundles)."""
    run = root / "run"
    (run / "logs").mkdir(parents=True)
    (run / "phases" / "base_eval").mkdir(parents=True)
    (run / "artifacts" / "checkpoints" / "base").mkdir(parents=True)
    result = result or synthetic_result()
    (run / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    events, power = _timeline(result)
    (run / "events.jsonl").write_text(events)
    (run / "power.csv").write_text(power)
    (run / "logs" / "pretrain.log").write_text("step 1 loss 10.9\n")
    (run / "phases" / "base_eval" / "core.csv").write_text(_core_csv(result))
    (run / "artifacts" / "checkpoints" / "base" / "model_000010.pt").write_bytes(b"\x00weights")
    return run


def _timeline(result: dict[str, Any], t0: float = 1_795_000_000.0) -> tuple[str, str]:
    """events.jsonl and power.csv text whose phase timestamps agree with the result's phase seconds."""

    def event(t: float, event_type: str, key: str, value: Any, **meta: Any) -> str:
        return ":::MLLOG " + json.dumps({"namespace": "nanobench", "time_ms": int(round(t * 1000)), "event_type": event_type,
                                         "key": key, "value": value, "metadata": meta}) + "\n"

    lines = [event(t0, "INTERVAL_START", "run_start", result.get("preset"))]
    rows = ["unix_time,t_s,phase"]
    t = t0 + 1.0
    for phase in result.get("phases") or []:
        if not isinstance(phase, dict) or not isinstance(phase.get("seconds"), (int, float)):
            continue
        wall = phase["seconds"] - phase.get("carried_seconds", 0.0) - phase.get("background_wait_seconds", 0.0)
        lines.append(event(t, "INTERVAL_START", "phase_start", phase.get("name")))
        lines.append(event(t + wall, "INTERVAL_END", "phase_stop", phase.get("name"), seconds=phase["seconds"], ok=True))
        rows += [f"{t:.3f},{t - t0:.3f},{phase.get('name')}", f"{t + wall:.3f},{t + wall - t0:.3f},{phase.get('name')}"]
        t += wall + 0.01
    lines.append(event(t + 1.0, "INTERVAL_END", "run_stop", result.get("preset")))
    return "".join(lines), "\n".join(rows) + "\n"


def _core_csv(result: dict[str, Any]) -> str:
    """Per-task CORE rows whose centered mean is the result's CORE score (bench.evidence recomputes it)."""
    core = (result.get("metrics") or {}).get("core")
    score = core.get("score") if isinstance(core, dict) else None
    lines = ["Task,Accuracy,Centered,N"]
    if isinstance(score, (int, float)):
        tasks = {k: v for k, v in (core.get("tasks") or {}).items() if isinstance(v, (int, float))}
        values = list(tasks.values())
        balance = score * (len(values) + 1) - sum(values)  # one more task makes the mean come out at the score
        for name, value in [*tasks.items(), ("other", balance)]:
            lines.append(f"{name},0.000000,{value:.9f},100")
        lines.append(f"CORE,,{score:.9f},{100 * (len(values) + 1)}")
    return "\n".join(lines) + "\n"
