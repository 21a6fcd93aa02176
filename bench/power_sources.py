"""Readers for the machine's power and load sensors: NVML (GPUs), RAPL (CPU packages), psutil (host).

Each reader is usable alone and reports a missing source as ``None`` plus a reason; nothing here
keeps phase state (that is :class:`bench.power.PowerMonitor`). ``pynvml`` is imported lazily and
any module with its API can be injected (tests use a fake).
"""

from __future__ import annotations

import contextlib
import glob
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil

DEFAULT_RAPL_ROOT = "/sys/class/powercap"
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
# NVML "clocks event" (throttle) reason bits.
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the set throttle bits (unknown bits as hex)."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    if unknown:
        names.append(hex(unknown))
    return names


def error_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------------------- NVML


def load_nvml(nvml: Any = None) -> tuple[Any | None, str | None]:
    """``(module, None)`` for an initialised NVML, or ``(None, reason)``. ``nvml`` injects a module."""
    if nvml is None:
        try:
            import pynvml as nvml  # type: ignore[no-redef]
        except ImportError as exc:
            return None, f"pynvml (nvidia-ml-py) is not importable: {exc}"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"NVML init failed: {error_text(exc) or type(exc).__name__}"
    return nvml, None


class NvmlGpus:
    """An initialised NVML session over a set of GPUs: power, energy counters, clocks, temperature."""

    def __init__(self, nvml: Any, indices: list[int]) -> None:
        self.nvml = nvml
        self.indices = indices
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        self.counter_unsupported: list[str | None] = []
        for handle in self.handles:
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                self.counter_unsupported.append(None)
            except Exception as exc:
                self.counter_unsupported.append(f"energy counter unsupported: {error_text(exc)}")
        self._throttle_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )

    @classmethod
    def open(cls, nvml: Any = None, indices: list[int] | None = None) -> tuple["NvmlGpus | None", str | None]:
        module, reason = load_nvml(nvml)
        if module is None:
            return None, reason
        try:
            count = module.nvmlDeviceGetCount()
            if count == 0:
                module.nvmlShutdown()
                return None, "NVML found no GPU"
            chosen = list(range(count)) if indices is None else [i for i in indices if 0 <= i < count]
            if not chosen:
                module.nvmlShutdown()
                return None, f"none of GPU indices {indices} exist (NVML sees {count})"
            return cls(module, chosen), None
        except Exception as exc:
            with contextlib.suppress(Exception):
                module.nvmlShutdown()
            return None, f"NVML device query failed: {error_text(exc)}"

    @property
    def count(self) -> int:
        return len(self.handles)

    def power_watts(self) -> list[float]:
        """Instantaneous board power per GPU. Raises the NVML error."""
        get = self.nvml.nvmlDeviceGetPowerUsage
        return [get(h) / 1000.0 for h in self.handles]

    def energy_mj(self) -> tuple[list[int | None], str | None]:
        """Per-GPU counter readings (``None`` where unsupported or failing) and the first error."""
        values: list[int | None] = []
        error = None
        for handle, unsupported in zip(self.handles, self.counter_unsupported):
            if unsupported:
                values.append(None)
                continue
            try:
                values.append(int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)))
            except Exception as exc:
                values.append(None)
                error = error or f"NVML energy counter read failed: {error_text(exc)}"
        return values, error

    def slow_stats(self) -> list[tuple[float | None, float | None, int | None]]:
        """``(temperature C, SM clock MHz, throttle mask)`` per GPU; ``None`` where a query fails."""
        nvml = self.nvml
        return [
            (
                _query(nvml.nvmlDeviceGetTemperature, handle, NVML_TEMPERATURE_GPU),
                _query(nvml.nvmlDeviceGetClockInfo, handle, NVML_CLOCK_SM),
                _query(self._throttle_fn, handle),
            )
            for handle in self.handles
        ]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


def _query(fn: Callable[..., Any] | None, *args: Any) -> Any:
    """``fn(*args)`` as a number, or ``None`` when the query is missing, unsupported or failing."""
    if fn is None:
        return None
    try:
        value = fn(*args)
    except Exception:
        return None
    return value if isinstance(value, (int, float)) else None


# ----------------------------------------------------------------------------------------- RAPL


class RaplReader:
    """CPU package energy from the Linux powercap interface, accumulated across counter wraps."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_RAPL_ROOT) -> None:
        self.root = Path(root)
        self.domains: list[tuple[int, int]] = []  # (open fd of energy_uj, max_energy_range_uj)
        self.unavailable_reason: str | None = None
        self._last: list[int] | None = None
        self._lock = threading.Lock()
        self.total_joules = 0.0
        self._discover()

    def _discover(self) -> None:
        # Package domains are intel-rapl:N (subdomains intel-rapl:N:M are parts of a package).
        dirs = sorted(p for p in glob.glob(str(self.root / "intel-rapl:*")) if Path(p).name.count(":") == 1)
        if not dirs:
            self.unavailable_reason = f"no RAPL package domains under {self.root}"
            return
        try:
            for d in dirs:
                max_range = int((Path(d) / "max_energy_range_uj").read_text().strip())
                # Kept open: re-reading a sysfs attribute at offset 0 is far cheaper than reopening it.
                fd = os.open(Path(d) / "energy_uj", os.O_RDONLY)
                self.domains.append((fd, max_range))
                int(os.pread(fd, 32, 0))
        except PermissionError:
            self.close()
            self.unavailable_reason = f"RAPL energy_uj under {self.root} is not readable by this user (root only)"
        except (OSError, ValueError) as exc:
            self.close()
            self.unavailable_reason = f"RAPL unreadable: {exc}"

    def close(self) -> None:
        for fd, _ in self.domains:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.domains = []

    @property
    def available(self) -> bool:
        return bool(self.domains)

    def read(self) -> float | None:
        """Accumulate energy since the previous read; returns the running total in joules (or None)."""
        if not self.domains:
            return None
        with self._lock:
            try:
                now = [int(os.pread(fd, 32, 0)) for fd, _ in self.domains]
            except (OSError, ValueError):
                return None
            if self._last is not None:
                for (_, max_range), prev, cur in zip(self.domains, self._last, now):
                    delta = cur - prev
                    if delta < 0:  # the counter wrapped
                        delta += max_range
                    self.total_joules += delta / 1e6
            self._last = now
            return self.total_joules


# ------------------------------------------------------------------------------------ host stats


class HostStats:
    """System CPU utilisation (from cpu_times deltas), RSS of a process tree, disk and network IO."""

    def __init__(self, root_pid: int | None = None, children_refresh_s: float = 2.0) -> None:
        self.root = psutil.Process(root_pid or os.getpid())
        self._children: list[psutil.Process] = []
        self._children_at = -1e9
        self._refresh_s = children_refresh_s
        self._last_times = psutil.cpu_times()
        self._lock = threading.Lock()

    def cpu_util_pct(self) -> float | None:
        """Busy share of all CPUs since the previous call, in percent."""
        with self._lock:
            now, prev = psutil.cpu_times(), self._last_times
            self._last_times = now
        busy = sum(now) - now.idle - getattr(now, "iowait", 0.0)
        busy_prev = sum(prev) - prev.idle - getattr(prev, "iowait", 0.0)
        total = sum(now) - sum(prev)
        if total <= 0:
            return None
        return max(0.0, min(100.0, 100.0 * (busy - busy_prev) / total))

    def rss_bytes(self) -> int | None:
        """Resident memory of the root process and its descendants (children list cached briefly)."""
        now = time.monotonic()
        if now - self._children_at > self._refresh_s:
            try:
                self._children = self.root.children(recursive=True)
            except psutil.Error:
                self._children = []
            self._children_at = now
        total = 0
        for proc in [self.root, *self._children]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total or None

    @staticmethod
    def io_counters() -> dict[str, int | None]:
        disk = _safe(psutil.disk_io_counters)
        net = _safe(psutil.net_io_counters)
        return {
            "disk_read_bytes": getattr(disk, "read_bytes", None),
            "disk_write_bytes": getattr(disk, "write_bytes", None),
            "net_sent_bytes": getattr(net, "bytes_sent", None),
            "net_recv_bytes": getattr(net, "bytes_recv", None),
        }


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None
