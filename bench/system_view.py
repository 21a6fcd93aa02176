"""Readable summaries of a recorded ``system.json``: the hardware label and the few lines people read.

``describe_system`` (bench.system) records everything; this module only *reads* such a dict and
turns it into text: ``hardware_label`` ("8 x NVIDIA H100 80GB HBM3" or "CPU only: AMD EPYC, 2
cores") and ``system_lines`` (GPU model, count, memory, interconnect, CPU, RAM, driver, torch, OS).
Missing values print as ``n/a``; nothing here raises on a malformed dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NA = "n/a"


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _gib(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return f"{value / 2**30:.0f} GiB"


def gpu_devices(system: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    devices = _dict(system.get("gpus")).get("devices")
    return [d for d in devices if isinstance(d, Mapping)] if isinstance(devices, list) else []


def gpu_count(system: Mapping[str, Any]) -> int:
    count = _dict(system.get("gpus")).get("count", system.get("accelerator_count"))
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return len(gpu_devices(system))
    return count


def gpu_models(system: Mapping[str, Any]) -> str | None:
    names = [str(d.get("name")) for d in gpu_devices(system) if d.get("name")]
    return " + ".join(dict.fromkeys(names)) or None


def _cpu_text(system: Mapping[str, Any]) -> str:
    cpu = _dict(system.get("cpu"))
    model = cpu.get("model") or NA
    cores = cpu.get("physical_cores")
    threads = cpu.get("logical_cores")
    extra = []
    if isinstance(cpu.get("sockets"), int) and cpu["sockets"] > 1:
        extra.append(f"{cpu['sockets']} sockets")
    if cores:
        extra.append(f"{cores} cores")
    if threads and threads != cores:
        extra.append(f"{threads} threads")
    return f"{model}" + (f" ({', '.join(extra)})" if extra else "")


def hardware_label(system: Mapping[str, Any]) -> str:
    """``8 x NVIDIA H100 80GB HBM3`` or ``CPU only: AMD EPYC (2 cores)``; ``unknown hardware`` when empty."""
    count, model = gpu_count(system), gpu_models(system)
    if count and model:
        return f"{count} x {model}"
    if count:
        return f"{count} GPU(s)"
    cpu = _dict(system.get("cpu"))
    if cpu.get("model") or cpu.get("physical_cores"):
        return f"CPU only: {_cpu_text(system)}"
    return str(system.get("machine_id") or "unknown hardware")


def interconnect(system: Mapping[str, Any]) -> str:
    """NVLink / PCIe read from ``nvidia-smi topo -m`` (``gpu_topology``); ``n/a`` with fewer than two GPUs."""
    if gpu_count(system) < 2:
        return "none (one GPU)" if gpu_count(system) == 1 else "n/a (no GPU)"
    topology = system.get("gpu_topology")
    if not isinstance(topology, str) or not topology.strip():
        return NA + " (topology not recorded)"
    links = sorted(set(re.findall(r"\bNV(\d+)\b", topology)), key=int)
    if links:
        return "NVLink (" + ", ".join(f"NV{n}" for n in links) + " between GPUs)"
    for token, text in (("SYS", "PCIe across CPU sockets"), ("NODE", "PCIe within a NUMA node"), ("PHB", "PCIe via host bridge"),
                        ("PXB", "PCIe via switches"), ("PIX", "PCIe (single switch)")):
        if re.search(rf"\b{token}\b", topology):
            return text
    return "see gpu_topology"


def system_lines(system: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(label, text)`` lines for a human: GPUs, memory, interconnect, CPU, RAM, driver, CUDA, torch, OS."""
    gpus = _dict(system.get("gpus"))
    sw = _dict(system.get("software"))
    os_info = _dict(system.get("os"))
    devices = gpu_devices(system)
    mems = {m for m in (_gib(d.get("memory_bytes")) for d in devices) if m}
    count = gpu_count(system)
    lines = [
        ("Hardware", hardware_label(system)),
        ("GPU model", gpu_models(system) or ("none" if count == 0 else NA)),
        ("GPU count", str(count)),
        ("GPU memory", (" / ".join(sorted(mems)) + " each") if mems else ("n/a" if count else "none")),
        ("Interconnect", interconnect(system)),
        ("CPU", _cpu_text(system)),
        ("RAM", _gib(_dict(system.get("memory")).get("total_bytes")) or NA),
        ("GPU driver / CUDA", f"{gpus.get('driver_version') or NA} / {gpus.get('cuda_driver_version') or sw.get('cuda_runtime') or NA}"),
        ("torch", str(sw.get("torch") or NA)),
        ("Python", str(sw.get("python") or NA)),
        ("OS", f"{os_info.get('name') or NA}" + (f", kernel {os_info['kernel']}" if os_info.get("kernel") else "")),
        ("Machine id", str(system.get("machine_id") or NA)),
    ]
    return lines
