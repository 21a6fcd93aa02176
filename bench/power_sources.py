"""Readers for the machine's power and load sensors: NVML (GPUs), RAPL (CPU packages), psutil (host).

Each reader is usable alone and reports a missing source as ``None`` plus a reason; nothing here
keeps phase state (that is :class:`bench.power.PowerMonitor`). ``pynvml`` is imported lazily and
any module with its API can be injected (tests use a fake).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
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

    label = "nvml"

    def __init__(self, nvml: Any, indices: list[int], notes: list[str] | None = None) -> None:
        self.nvml = nvml
        self.indices = indices
        self.notes = list(notes or [])  # how the visible devices were mapped (MIG, ordering)
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
    def open(
        cls, nvml: Any = None, indices: list[int] | None = None, *, visible: str | None = None, used: int | None = None
    ) -> tuple["NvmlGpus | None", str | None]:
        """Every GPU (``indices`` None), the given NVML indices, or -- with ``visible`` (the value of
        CUDA_VISIBLE_DEVICES) and/or ``used`` (processes per node) -- only the GPUs the run's processes use."""
        module, reason = load_nvml(nvml)
        if module is None:
            return None, reason
        try:
            count = module.nvmlDeviceGetCount()
            if count == 0:
                module.nvmlShutdown()
                return None, "NVML found no GPU"
            notes: list[str] = []
            if indices is None and (visible is not None or used is not None):
                indices, notes = map_visible_nvml(module, visible, used)
                if not indices:
                    module.nvmlShutdown()
                    return None, "; ".join(notes) or "no visible GPU"
            chosen = list(range(count)) if indices is None else [i for i in indices if 0 <= i < count]
            if not chosen:
                module.nvmlShutdown()
                return None, f"none of GPU indices {indices} exist (NVML sees {count})"
            return cls(module, chosen, notes), None
        except VisibleDevicesError as exc:
            with contextlib.suppress(Exception):
                module.nvmlShutdown()
            return None, str(exc)
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


class VisibleDevicesError(ValueError):
    """CUDA_VISIBLE_DEVICES names a device NVML does not have."""


_PCI_BUS_ID = re.compile(r"^(?:([0-9a-f]{1,8}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-9a-f])$")


def _norm_bus_id(text: str) -> str | None:
    """``00000000:3B:00.0`` / ``0000:3b:00.0`` / ``3b:00.0`` -> ``0000:3b:00.0``; None if not a bus id."""
    m = _PCI_BUS_ID.match(text.strip().lower())
    if not m:
        return None
    domain = int(m.group(1) or "0", 16)
    return f"{domain:04x}:{m.group(2)}:{m.group(3)}.{m.group(4)}"


def map_visible_nvml(nvml: Any, visible: str | None, used: int | None = None) -> tuple[list[int], list[str]]:
    """NVML indices of the GPUs a run uses, and notes on how they were found.

    ``visible`` is CUDA_VISIBLE_DEVICES (None: all GPUs are visible). Its entries may be indices (NVML
    enumerates in PCI bus order, which is what CUDA uses when CUDA_DEVICE_ORDER=PCI_BUS_ID -- the harness
    sets that for its stages), ``GPU-<uuid>`` (or a unique prefix), ``MIG-<uuid>`` (the instance's parent
    GPU is measured: NVML has no per-instance power), or a PCI bus id. Only the first ``used`` visible
    devices run a process (local ranks 0..used-1); the others are not charged.
    """
    count = nvml.nvmlDeviceGetCount()
    notes: list[str] = []
    if visible is None:
        entries: list[str] = [str(i) for i in range(count)]
    else:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if not entries or entries == ["-1"]:
            return [], [f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"]
    if used is not None:
        entries = entries[: max(0, used)]
    uuids: list[str | None] = []
    buses: list[str | None] = []
    for i in range(count):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        uuids.append(text_or_none(call_or_none(nvml, "nvmlDeviceGetUUID", h)))
        pci = call_or_none(nvml, "nvmlDeviceGetPciInfo", h)
        bus = getattr(pci, "busId", None) if pci is not None else None
        buses.append(_norm_bus_id(error_text(bus)) if bus is not None else None)
    chosen: list[int] = []
    for entry in entries:
        index = _match_entry(nvml, entry, count, uuids, buses, notes)
        if index not in chosen:
            chosen.append(index)
    return chosen, notes


def _match_entry(nvml: Any, entry: str, count: int, uuids: list[str | None], buses: list[str | None], notes: list[str]) -> int:
    if entry.isdigit():
        index = int(entry)
        if index >= count:
            raise VisibleDevicesError(f"CUDA_VISIBLE_DEVICES names GPU {index} but NVML sees {count} GPU(s)")
        return index
    low = entry.lower()
    if low.startswith("mig-"):
        try:
            mig = nvml.nvmlDeviceGetHandleByUUID(entry)
            parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
            index = int(nvml.nvmlDeviceGetIndex(parent))
        except Exception as exc:
            raise VisibleDevicesError(f"MIG device {entry} not found by NVML: {error_text(exc)}") from None
        notes.append(f"{entry} is a MIG instance of GPU {index}: energy and power are the whole GPU's "
                     "(NVML has no per-instance power), shared with any other instance on it")
        return index
    if low.startswith("gpu-"):
        hits = [i for i, u in enumerate(uuids) if u is not None and u.lower().startswith(low)]
        if len(hits) != 1:
            what = "no" if not hits else "more than one"
            raise VisibleDevicesError(f"CUDA_VISIBLE_DEVICES entry {entry}: {what} GPU has that UUID")
        return hits[0]
    bus = _norm_bus_id(entry)
    if bus is not None and bus in buses:
        return buses.index(bus)
    raise VisibleDevicesError(f"CUDA_VISIBLE_DEVICES entry {entry!r} is not an index, GPU-/MIG- UUID or PCI bus id of a GPU here")


def call_or_none(module: Any, name: str, *args: Any) -> Any:
    """``module.name(*args)``, or None when the library lacks the call or it raises (optional facts)."""
    fn = getattr(module, name, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:
        return None


def text_or_none(value: Any) -> str | None:
    return None if value is None else error_text(value)


def _query(fn: Callable[..., Any] | None, *args: Any) -> Any:
    """``fn(*args)`` as a number, or ``None`` when the query is missing, unsupported or failing."""
    if fn is None:
        return None
    try:
        value = fn(*args)
    except Exception:
        return None
    return value if isinstance(value, (int, float)) else None


# --------------------------------------------------------------------------------------- AMD SMI


def load_amdsmi(amdsmi: Any = None) -> tuple[Any | None, str | None]:
    """``(module, None)`` for an initialised AMD SMI, or ``(None, reason)``. ``amdsmi`` injects a module."""
    if amdsmi is None:
        try:
            import amdsmi  # type: ignore[no-redef]
        except ImportError as exc:
            return None, f"amdsmi (AMD SMI's Python binding, shipped with ROCm) is not importable: {exc}"
    try:
        flags = getattr(getattr(amdsmi, "AmdSmiInitFlags", None), "INIT_AMD_GPUS", None)
        amdsmi.amdsmi_init(flags) if flags is not None else amdsmi.amdsmi_init()
    except Exception as exc:
        return None, f"AMD SMI init failed: {error_text(exc) or type(exc).__name__}"
    return amdsmi, None


def amd_visible_entries(env: dict[str, str] | os._Environ[str]) -> str | None:
    """The visible-device list a ROCm process honours (ROCR_VISIBLE_DEVICES, then HIP_, then CUDA_)."""
    for name in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        if env.get(name) is not None:
            return env[name]
    return None


def _amd_energy_uj(info: Any) -> float:
    """AMD SMI's energy reading in microjoules: accumulator (``energy_accumulator``, older bindings
    ``power``) times ``counter_resolution`` (uJ per count)."""
    if not isinstance(info, dict):
        raise TypeError(f"unexpected energy reading {info!r}")
    acc = info.get("energy_accumulator", info.get("power"))
    res = info.get("counter_resolution")
    if not isinstance(acc, (int, float)) or not isinstance(res, (int, float)):
        raise ValueError(f"energy counter not reported ({info!r})")
    return float(acc) * float(res)


def _amd_watts(info: Any) -> float:
    """Socket power in watts from ``amdsmi_get_power_info`` (current, else average; "N/A" is skipped)."""
    if isinstance(info, dict):
        for key in ("current_socket_power", "average_socket_power", "socket_power"):
            value = info.get(key)
            if isinstance(value, (int, float)):
                return float(value)
    raise ValueError(f"no socket power in {info!r}")


class AmdSmiGpus:
    """AMD GPUs through AMD SMI with :class:`NvmlGpus`'s interface: power, energy counters, clocks, temperature."""

    label = "amdsmi"

    def __init__(self, amdsmi: Any, indices: list[int], handles: list[Any], notes: list[str] | None = None) -> None:
        self.amdsmi = amdsmi
        self.indices = indices
        self.handles = handles
        self.notes = list(notes or [])
        self.counter_unsupported: list[str | None] = []
        for handle in handles:
            try:
                _amd_energy_uj(amdsmi.amdsmi_get_energy_count(handle))
                self.counter_unsupported.append(None)
            except Exception as exc:
                self.counter_unsupported.append(f"energy counter unsupported: {error_text(exc)}")

    @classmethod
    def open(
        cls, amdsmi: Any = None, *, visible: str | None = None, used: int | None = None
    ) -> tuple["AmdSmiGpus | None", str | None]:
        module, reason = load_amdsmi(amdsmi)
        if module is None:
            return None, reason
        try:
            handles = list(module.amdsmi_get_processor_handles())
            if not handles:
                module.amdsmi_shut_down()
                return None, "AMD SMI found no GPU"
            if visible is None:
                entries = [str(i) for i in range(len(handles))]
            else:
                entries = [e.strip() for e in visible.split(",") if e.strip()]
            if used is not None:
                entries = entries[: max(0, used)]
            uuids = [text_or_none(call_or_none(module, "amdsmi_get_gpu_device_uuid", h)) for h in handles]
            chosen: list[int] = []
            for entry in entries:
                if entry.isdigit() and int(entry) < len(handles):
                    index = int(entry)
                else:
                    hits = [i for i, u in enumerate(uuids) if u and (u.lower() == entry.lower() or entry.lower().endswith(u.lower()))]
                    if len(hits) != 1:
                        raise VisibleDevicesError(f"visible-device entry {entry!r} matches no AMD GPU (AMD SMI sees {len(handles)})")
                    index = hits[0]
                if index not in chosen:
                    chosen.append(index)
            if not chosen:
                module.amdsmi_shut_down()
                return None, f"the visible-device list {visible!r} hides every AMD GPU"
            return cls(module, chosen, [handles[i] for i in chosen]), None
        except Exception as exc:
            with contextlib.suppress(Exception):
                module.amdsmi_shut_down()
            return None, f"AMD SMI device query failed: {error_text(exc)}"

    @property
    def count(self) -> int:
        return len(self.handles)

    def power_watts(self) -> list[float]:
        """Socket power per GPU. Raises AMD SMI's error."""
        return [_amd_watts(self.amdsmi.amdsmi_get_power_info(h)) for h in self.handles]

    def energy_mj(self) -> tuple[list[int | None], str | None]:
        values: list[int | None] = []
        error = None
        for handle, unsupported in zip(self.handles, self.counter_unsupported):
            if unsupported:
                values.append(None)
                continue
            try:
                values.append(int(round(_amd_energy_uj(self.amdsmi.amdsmi_get_energy_count(handle)) / 1000.0)))
            except Exception as exc:
                values.append(None)
                error = error or f"AMD SMI energy counter read failed: {error_text(exc)}"
        return values, error

    def slow_stats(self) -> list[tuple[float | None, float | None, int | None]]:
        """``(hotspot temperature C, GFX clock MHz, None)`` per GPU (AMD SMI has no NVML-style throttle mask)."""
        m = self.amdsmi
        temp_type = getattr(getattr(m, "AmdSmiTemperatureType", None), "HOTSPOT", None)
        temp_metric = getattr(getattr(m, "AmdSmiTemperatureMetric", None), "CURRENT", None)
        clk_type = getattr(getattr(m, "AmdSmiClkType", None), "GFX", None)
        out = []
        for handle in self.handles:
            temp = _query(getattr(m, "amdsmi_get_temp_metric", None), handle, temp_type, temp_metric)
            clock = call_or_none(m, "amdsmi_get_clock_info", handle, clk_type)
            mhz = clock.get("clk") if isinstance(clock, dict) else None
            out.append((temp, mhz if isinstance(mhz, (int, float)) else None, None))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.amdsmi.amdsmi_shut_down()


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
