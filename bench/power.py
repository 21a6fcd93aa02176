"""Power and energy of the machine while phases run, observed from outside the workload.

Sources, each recorded as unavailable (``None`` plus a reason, never zero) when it can't be read:

- **GPU energy** (primary): NVML's per-GPU total-energy counter (mJ since driver load), read at
  each phase boundary; the phase's energy is the sum of the per-GPU deltas.
- **GPU power** (secondary): ``nvmlDeviceGetPowerUsage`` sampled by a background thread (default
  10 Hz) and integrated (trapezoid) per phase. It is the fallback where the counter is unsupported
  and a cross-check where it is: ``crosscheck_rel_diff = (counter - integral) / counter``.
- **CPU package energy**: RAPL ``/sys/class/powercap/intel-rapl:N/energy_uj`` read every sample and
  accumulated with wraparound handled via ``max_energy_range_uj``. It becomes the phase's
  ``energy_joules`` only on machines without NVIDIA GPUs; otherwise it is reported separately.
- **Host**: system CPU utilisation, RSS of the process tree, disk and network IO (psutil).

Plus per-GPU temperature, SM clock and throttle reasons, sampled at a lower rate (1 in
``slow_every`` samples). An idle baseline (``start(idle_baseline_s=...)``) measures the machine
before the first phase. If NVML fails mid-phase, that phase's energy is marked ``partial`` with the
error as the reason. ``pynvml`` is imported lazily; tests pass a fake module as ``nvml=``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.power_sources import (
    DEFAULT_RAPL_ROOT,
    AmdSmiGpus,
    HostStats,
    NvmlGpus,
    RaplReader,
    decode_throttle_reasons,
    error_text,
)

SOURCE_NVML_COUNTER = "nvml_counter"
SOURCE_NVML_SAMPLES = "nvml_power_samples"
SOURCE_NVML_MIXED = "nvml_counter+samples"
SOURCE_RAPL = "rapl"
# Devices with no GPU energy source we read: why their GPU energy is null.
NO_GPU_ENERGY = {
    "cpu": "device cpu: no GPU is used",
    "mps": "Apple MPS: no GPU energy source is readable without root (powermetrics needs sudo)",
    "xpu": "Intel XPU: no maintained energy source is integrated (xpu-smi / Level Zero Sysman not read)",
}
STATUS_MEASURED = "measured"
STATUS_PARTIAL = "partial"
STATUS_UNAVAILABLE = "unavailable"
IDLE_PHASE = "_idle"


# ------------------------------------------------------------------------------- phase accounting


@dataclass
class _Sample:
    t: float  # monotonic seconds
    unix: float
    gpu_watts: list[float] | None
    cpu_joules_total: float | None
    slow: list[tuple[float | None, float | None, int | None]] | None = None
    cpu_util: float | None = None
    rss: int | None = None
    error: str | None = None


@dataclass
class _PhaseAccumulator:
    name: str
    t0: float
    gpu_counter_start: list[int | None] | None
    cpu_joules_start: float | None
    io_start: dict[str, int | None]
    samples: int = 0
    gpu_samples: int = 0
    last_t: float | None = None
    last_watts: list[float] | None = None
    integral_j: list[float] | None = None
    errors: list[str] = field(default_factory=list)
    max_temp: list[float | None] | None = None
    clock_sum: list[float] | None = None
    clock_n: list[int] | None = None
    throttle: int = 0
    util_sum: float = 0.0
    util_n: int = 0
    rss_max: int | None = None

    def add(self, s: _Sample) -> None:
        if self.last_t is not None and s.t < self.last_t:
            return  # a sampler reading from before this phase's boundary sample
        if s.error:
            self.errors.append(s.error)
        if s.gpu_watts is not None:
            if self.integral_j is None:
                self.integral_j = [0.0] * len(s.gpu_watts)
            if self.last_watts is not None and self.last_t is not None:
                dt = s.t - self.last_t
                for i, (w0, w1) in enumerate(zip(self.last_watts, s.gpu_watts)):
                    self.integral_j[i] += 0.5 * (w0 + w1) * dt
            self.last_watts = s.gpu_watts
            self.gpu_samples += 1
        self.samples += 1
        self.last_t = s.t
        if s.slow is not None:
            n = len(s.slow)
            if self.max_temp is None:
                self.max_temp, self.clock_sum, self.clock_n = [None] * n, [0.0] * n, [0] * n
            for i, (temp, clock, mask) in enumerate(s.slow):
                if temp is not None:
                    self.max_temp[i] = temp if self.max_temp[i] is None else max(self.max_temp[i], temp)
                if clock is not None:
                    self.clock_sum[i] += clock  # type: ignore[index]
                    self.clock_n[i] += 1  # type: ignore[index]
                if mask:
                    self.throttle |= mask
        if s.cpu_util is not None:
            self.util_sum += s.cpu_util
            self.util_n += 1
        if s.rss is not None:
            self.rss_max = s.rss if self.rss_max is None else max(self.rss_max, s.rss)


def _rel_diff(reference: float, other: float) -> float | None:
    return None if reference == 0 else (reference - other) / reference


class PowerMonitor:
    """Samples power in a background thread and accounts energy per phase.

    Usage::

        mon = PowerMonitor(interval_s=0.1, csv_path=run_dir / "power.csv")
        mon.start(idle_baseline_s=3.0)
        with mon.phase("pretrain") as ph:
            ...                      # run the phase
        ph.result["energy_joules"]   # or mon.results["pretrain"]
        summary = mon.stop()

    ``nvml``: a module with pynvml's API (tests pass a fake); ``None`` imports pynvml lazily;
    ``False`` disables GPU measurement. ``rapl_root``: the powercap directory (``None`` disables).
    """

    def __init__(
        self,
        interval_s: float = 0.1,
        csv_path: str | os.PathLike[str] | None = None,
        *,
        nvml: Any = None,
        gpu_indices: list[int] | None = None,
        amdsmi: Any = None,
        device: str = "auto",
        visible: str | None = None,
        used: int | None = None,
        rapl_root: str | os.PathLike[str] | None = DEFAULT_RAPL_ROOT,
        root_pid: int | None = None,
        slow_every: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.interval_s = interval_s
        self.csv_path = Path(csv_path) if csv_path is not None else None
        self.slow_every = max(1, slow_every)
        self._flush_every = max(1, round(1.0 / interval_s))
        self._nvml_arg = nvml
        self._gpu_indices = gpu_indices
        self._amdsmi_arg = amdsmi
        self._device = device  # auto | cuda | rocm | mps | xpu | cpu: which GPU library to read
        self._visible = visible  # CUDA_VISIBLE_DEVICES (or the ROCm equivalent) of the stages
        self._used = used  # processes per node: only the first `used` visible GPUs are charged
        self._rapl_root = rapl_root
        self._root_pid = root_pid
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: _PhaseAccumulator | None = None
        self._n = 0
        self._cost_s = 0.0
        self._rows: list[tuple[str, _Sample]] = []
        self._csv_fh: io.TextIOBase | None = None
        self._csv_writer: Any = None
        self._last_rapl: tuple[float, float] | None = None  # (t, joules total)
        self.gpus: NvmlGpus | None = None
        self.gpu_unavailable_reason: str | None = None
        self.rapl: RaplReader | None = None
        self.host: HostStats | None = None
        self.results: dict[str, dict[str, Any]] = {}
        self.idle_baseline: dict[str, Any] | None = None
        self._started = False

    # ----- lifecycle

    def open_sources(self) -> None:
        """Initialise NVML, RAPL and psutil (``start`` does this; ``sample_once`` needs it)."""
        self.gpus, self.gpu_unavailable_reason = self._open_gpus()
        self.rapl = RaplReader(self._rapl_root) if self._rapl_root is not None else None
        self.host = HostStats(self._root_pid)
        if self.rapl is not None and self.rapl.available:
            joules = self.rapl.read()
            self._last_rapl = (self._clock(), joules) if joules is not None else None
        if self.csv_path is not None:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            self._csv_fh = open(self.csv_path, "w", newline="", encoding="utf-8")
            self._csv_writer = csv.writer(self._csv_fh)
            self._csv_writer.writerow(self.csv_header())

    def _open_gpus(self) -> tuple[Any, str | None]:
        """The GPU source for this run's device: NVML (NVIDIA), AMD SMI (ROCm), none (CPU, MPS, XPU)."""
        if self._nvml_arg is False and self._device not in ("rocm",):
            return None, "GPU measurement disabled"
        if self._device in NO_GPU_ENERGY:
            return None, NO_GPU_ENERGY[self._device]
        if self._device == "rocm":
            return AmdSmiGpus.open(self._amdsmi_arg, visible=self._visible, used=self._used)
        gpus, reason = NvmlGpus.open(self._nvml_arg, self._gpu_indices, visible=self._visible, used=self._used)
        if gpus is None and self._device == "auto" and self._amdsmi_arg is not False:
            amd, amd_reason = AmdSmiGpus.open(self._amdsmi_arg, visible=self._visible, used=self._used)
            if amd is not None:
                return amd, None
            reason = f"{reason}; {amd_reason}"
        return gpus, reason

    def start(self, idle_baseline_s: float = 0.0) -> None:
        """Open the sources, start the sampler thread, then measure ``idle_baseline_s`` seconds of idle."""
        if self._started:
            raise RuntimeError("PowerMonitor already started")
        self._started = True
        self.open_sources()
        self._thread = threading.Thread(target=self._loop, name="nanobench-power", daemon=True)
        self._thread.start()
        if idle_baseline_s > 0:
            self.measure_idle(idle_baseline_s)

    def stop(self) -> dict[str, Any]:
        """End any open phase, stop the thread, flush power.csv, close NVML; return :meth:`summary`."""
        if self._current is not None:
            self.end_phase()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 10 * self.interval_s))
            self._thread = None
        self._flush_csv()
        if self._csv_fh is not None:
            self._csv_fh.close()
            self._csv_fh = None
        if self.gpus is not None:
            self.gpus.close()
        if self.rapl is not None:
            self.rapl.close()
        return self.summary()

    def __enter__(self) -> "PowerMonitor":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- phases

    def begin_phase(self, name: str) -> None:
        """Start accounting a phase (reads the energy counters and takes a boundary sample now)."""
        sample = self._read_sample(slow=True)
        counters, error = self.gpus.energy_mj() if self.gpus else (None, None)
        io_now = HostStats.io_counters()
        with self._lock:
            if self._current is not None:
                raise RuntimeError(f"phase {self._current.name!r} is still open")
            acc = _PhaseAccumulator(name, sample.t, counters, sample.cpu_joules_total, io_now)
            if error:
                acc.errors.append(error)
            acc.add(sample)
            self._current = acc
            self._queue_row(sample, name)

    def end_phase(self) -> dict[str, Any]:
        """Close the open phase and return its measurement (also kept in ``results[name]``)."""
        sample = self._read_sample(slow=True)
        counters, error = self.gpus.energy_mj() if self.gpus else (None, None)
        io_now = HostStats.io_counters()
        with self._lock:
            acc = self._current
            if acc is None:
                raise RuntimeError("no phase is open")
            acc.add(sample)
            if error:
                acc.errors.append(error)
            self._queue_row(sample, acc.name)
            self._current = None
        result = self._finish(acc, sample.t, counters, sample.cpu_joules_total, io_now)
        self.results[acc.name] = result
        return result

    def mark(self, name: str | None) -> dict[str, Any] | None:
        """End the open phase (if any) and begin ``name`` (if not None); returns the ended phase."""
        ended = self.end_phase() if self._current is not None else None
        if name is not None:
            self.begin_phase(name)
        return ended

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator["PhaseHandle"]:
        """Context manager around :meth:`begin_phase`/:meth:`end_phase`; the handle's ``result`` is set on exit."""
        handle = PhaseHandle(name)
        self.begin_phase(name)
        try:
            yield handle
        finally:
            handle.result = self.end_phase()

    def measure_idle(self, seconds: float) -> dict[str, Any]:
        """Measure ``seconds`` of the machine doing nothing; stored in ``idle_baseline``."""
        self.begin_phase(IDLE_PHASE)
        self._stop.wait(seconds)
        result = self.end_phase()
        del self.results[IDLE_PHASE]
        self.idle_baseline = {
            "seconds": result["seconds"],
            "samples": result["samples"],
            "power_watts": result["avg_power_watts"],
            "energy_source": result["energy_source"],
            "gpu_power_watts": [None if e is None else e / result["seconds"] for e in result["gpu_energy_joules"]]
            if result["gpu_energy_joules"] and result["seconds"] > 0
            else None,
            "cpu_power_watts": result["cpu_energy_joules"] / result["seconds"]
            if result["cpu_energy_joules"] is not None and result["seconds"] > 0
            else None,
            "unavailable_reason": result["unavailable_reason"],
        }
        return self.idle_baseline

    # ----- sampling

    def sample_once(self) -> None:
        """Take one sample, account it to the open phase, and flush power.csv about once a second.

        The sampler thread calls this every ``interval_s``; its own cost is tracked for
        :meth:`sampler_stats`.
        """
        started = time.perf_counter()
        slow = self._n % self.slow_every == 0
        self._n += 1
        sample = self._read_sample(slow=slow)
        with self._lock:
            phase = self._current
            if phase is not None:
                phase.add(sample)
            self._queue_row(sample, phase.name if phase else "")
        if self._n % self._flush_every == 0:
            self._flush_csv()
        self._cost_s += time.perf_counter() - started

    def _read_sample(self, slow: bool) -> _Sample:
        t, unix = self._clock(), time.time()
        watts, error = None, None
        if self.gpus is not None:
            try:
                watts = self.gpus.power_watts()
            except Exception as exc:
                error = f"{'AMD SMI' if self.gpus.label == 'amdsmi' else 'NVML'} power read failed: {error_text(exc)}"
        cpu_total = self.rapl.read() if self.rapl is not None else None
        sample = _Sample(t, unix, watts, cpu_total, error=error)
        if slow:
            sample.slow = self.gpus.slow_stats() if self.gpus is not None else None
            if self.host is not None:
                sample.cpu_util = self.host.cpu_util_pct()
                sample.rss = self.host.rss_bytes()
        return sample

    def _loop(self) -> None:
        next_t = time.monotonic()
        while True:
            next_t += self.interval_s
            now = time.monotonic()
            if next_t < now:  # fell behind: skip missed ticks instead of bursting
                next_t = now + self.interval_s
            if self._stop.wait(next_t - now):
                return
            try:
                self.sample_once()
            except Exception as exc:  # never let the sampler die silently mid-run
                with self._lock:
                    if self._current is not None:
                        self._current.errors.append(f"sampler error: {exc!r}")

    # ----- power.csv

    def csv_header(self) -> list[str]:
        n = self.gpus.count if self.gpus else 0
        cols = ["unix_time", "t_s", "phase"]
        cols += [f"gpu{i}_w" for i in range(n)] + ["gpu_total_w", "cpu_w", "cpu_util_pct", "rss_bytes"]
        cols += [f"gpu{i}_temp_c" for i in range(n)] + [f"gpu{i}_sm_mhz" for i in range(n)] + ["gpu_throttle"]
        return cols

    def _queue_row(self, s: _Sample, phase: str) -> None:
        """Buffer a sample for power.csv (called under the lock; formatting waits for the flush)."""
        if self._csv_writer is not None:
            self._rows.append((phase, s))

    def _format_row(self, phase: str, s: _Sample, n: int) -> list[Any]:
        """One power.csv row. Missing values are empty cells, never zeros."""
        cpu_w = None
        if s.cpu_joules_total is not None:
            if self._last_rapl is not None and s.t > self._last_rapl[0]:
                cpu_w = (s.cpu_joules_total - self._last_rapl[1]) / (s.t - self._last_rapl[0])
            self._last_rapl = (s.t, s.cpu_joules_total)
        blank = [""] * n
        watts = [_cell(w) for w in s.gpu_watts] if s.gpu_watts is not None else blank
        temps = [_cell(x[0]) for x in s.slow] if s.slow else blank
        clocks = [_cell(x[1]) for x in s.slow] if s.slow else blank
        reasons = sorted({r for x in s.slow or () if x[2] for r in decode_throttle_reasons(x[2])})
        total = _cell(sum(s.gpu_watts)) if s.gpu_watts else ""
        head = [f"{s.unix:.3f}", f"{s.t:.3f}", phase]
        tail = [total, _cell(cpu_w), _cell(s.cpu_util), "" if s.rss is None else s.rss]
        return head + watts + tail + temps + clocks + ["|".join(reasons)]

    def _flush_csv(self) -> None:
        with self._lock:
            pending, self._rows = self._rows, []
        if self._csv_writer is not None and pending:
            n = self.gpus.count if self.gpus else 0
            self._csv_writer.writerows(self._format_row(phase, s, n) for phase, s in pending)
            self._csv_fh.flush()  # type: ignore[union-attr]

    # ----- results

    def _finish(
        self,
        acc: _PhaseAccumulator,
        t1: float,
        counters_end: list[int | None] | None,
        cpu_end: float | None,
        io_end: dict[str, int | None],
    ) -> dict[str, Any]:
        seconds = max(0.0, t1 - acc.t0)
        errors = list(dict.fromkeys(acc.errors))
        gpu_energy, gpu_sources, gpu_reason = self._gpu_energy(acc, counters_end)
        cpu_energy = None if cpu_end is None or acc.cpu_joules_start is None else max(0.0, cpu_end - acc.cpu_joules_start)
        cpu_reason = None
        if cpu_energy is None:
            cpu_reason = "RAPL disabled" if self.rapl is None else (self.rapl.unavailable_reason or "RAPL read failed")

        energy, source, reason = None, None, None
        if self.gpus is not None:
            if gpu_energy is not None and all(e is not None for e in gpu_energy):
                energy = sum(gpu_energy)  # type: ignore[arg-type]
                kinds = set(gpu_sources)
                source = kinds.pop() if len(kinds) == 1 else _source(self.gpus.label, SOURCE_NVML_MIXED)
            else:
                reason = gpu_reason or "GPU energy could not be measured"
        elif cpu_energy is not None:
            energy, source = cpu_energy, SOURCE_RAPL
        else:
            reason = f"GPU: {self.gpu_unavailable_reason}; CPU: {cpu_reason}"

        if energy is None:
            status = STATUS_UNAVAILABLE
            if errors and reason and errors[0] not in reason:
                reason = f"{reason}; {errors[0]}"
        elif errors and self.gpus is not None:
            status, reason = STATUS_PARTIAL, errors[0]
        else:
            status = STATUS_MEASURED

        sampled = sum(acc.integral_j) if acc.integral_j is not None and acc.gpu_samples >= 2 else None
        crosscheck = None
        if source == _source(self.gpus.label if self.gpus else "nvml", SOURCE_NVML_COUNTER) and sampled is not None and energy:
            crosscheck = _rel_diff(energy, sampled)
        idle_w = (self.idle_baseline or {}).get("power_watts")
        above_idle = energy - idle_w * seconds if energy is not None and idle_w is not None else None
        io_delta = {
            k: (None if io_end.get(k) is None or acc.io_start.get(k) is None else io_end[k] - acc.io_start[k])  # type: ignore[operator]
            for k in io_end
        }
        return {
            "phase": acc.name,
            "seconds": seconds,
            "energy_joules": energy,
            "avg_power_watts": energy / seconds if energy is not None and seconds > 0 else None,
            "energy_source": source,
            "energy_status": status,
            "unavailable_reason": reason,
            "samples": acc.samples,
            "sampled_energy_joules": sampled,
            "crosscheck_rel_diff": crosscheck,
            "gpu_energy_joules": gpu_energy,
            "gpu_energy_sources": gpu_sources,
            "cpu_energy_joules": cpu_energy,
            "cpu_energy_unavailable_reason": cpu_reason,
            "idle_power_watts": idle_w,
            "energy_above_idle_joules": above_idle,
            "gpu_max_temp_c": acc.max_temp,
            "gpu_avg_sm_clock_mhz": [s / n if n else None for s, n in zip(acc.clock_sum, acc.clock_n)]  # type: ignore[arg-type]
            if acc.clock_sum is not None
            else None,
            "gpu_throttle_reasons": decode_throttle_reasons(acc.throttle),
            "cpu_util_avg_pct": acc.util_sum / acc.util_n if acc.util_n else None,
            "rss_max_bytes": acc.rss_max,
            **io_delta,
            "nvml_errors": errors,
        }

    def _gpu_energy(
        self, acc: _PhaseAccumulator, counters_end: list[int | None] | None
    ) -> tuple[list[float | None] | None, list[str | None], str | None]:
        """Per-GPU joules (counter delta, else the integrated samples), their sources, and a reason."""
        if self.gpus is None:
            return None, [], self.gpu_unavailable_reason
        start = acc.gpu_counter_start or [None] * self.gpus.count
        end = counters_end or [None] * self.gpus.count
        energies: list[float | None] = []
        sources: list[str | None] = []
        reason = None
        for i in range(self.gpus.count):
            if start[i] is not None and end[i] is not None and end[i] >= start[i]:  # type: ignore[operator]
                energies.append((end[i] - start[i]) / 1000.0)  # type: ignore[operator]
                sources.append(_source(self.gpus.label, SOURCE_NVML_COUNTER))
            elif acc.integral_j is not None and acc.gpu_samples >= 2:
                energies.append(acc.integral_j[i])
                sources.append(_source(self.gpus.label, SOURCE_NVML_SAMPLES))
            else:
                energies.append(None)
                sources.append(None)
                reason = reason or self.gpus.counter_unsupported[i] or (acc.errors[0] if acc.errors else "too few power samples")
        return energies, sources, reason

    def summary(self) -> dict[str, Any]:
        """Sources, idle baseline, per-phase results and the sampler's own cost."""
        return {
            "sources": {
                "gpu": {
                    "available": self.gpus is not None,
                    "library": self.gpus.label if self.gpus else None,
                    "indices": list(self.gpus.indices) if self.gpus else None,
                    "notes": list(getattr(self.gpus, "notes", [])) if self.gpus else [],
                    "count": self.gpus.count if self.gpus else 0,
                    "unavailable_reason": self.gpu_unavailable_reason,
                    "energy_counter_unsupported": self.gpus.counter_unsupported if self.gpus else None,
                },
                "cpu_rapl": {
                    "available": bool(self.rapl and self.rapl.available),
                    "unavailable_reason": self._rapl_reason(),
                },
            },
            "idle_baseline": self.idle_baseline,
            "phases": list(self.results.values()),
            "sampler": self.sampler_stats(),
        }

    def _rapl_reason(self) -> str | None:
        if self.rapl is None:
            return "RAPL disabled"
        return None if self.rapl.available else self.rapl.unavailable_reason

    def sampler_stats(self) -> dict[str, Any]:
        """Samples taken, mean cost of one, and that cost as a fraction of the sampling interval."""
        mean = self._cost_s / self._n if self._n else None
        return {
            "interval_s": self.interval_s,
            "samples": self._n,
            "mean_sample_cost_s": mean,
            "overhead_fraction": mean / self.interval_s if mean is not None else None,
        }


@dataclass
class PhaseHandle:
    """What :meth:`PowerMonitor.phase` yields; ``result`` is filled when the block exits."""

    name: str
    result: dict[str, Any] | None = None


def _source(label: str, nvml_name: str) -> str:
    """The energy-source name for a GPU library: ``nvml_counter`` -> ``amdsmi_counter`` on AMD."""
    return nvml_name if label == "nvml" else nvml_name.replace("nvml", label)


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
