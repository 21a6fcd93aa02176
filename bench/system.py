"""What machine ran the benchmark: an MLPerf-style system description, captured in well under a second.

:func:`describe_system` returns a JSON-ready dict grouped by topic (``cpu``, ``memory``, ``gpus``,
``software``, ``source``, ...) plus ``mlperf`` (the MLPerf system-description field names we can
fill automatically) and ``machine_id`` (GPU model and count, e.g. ``8xNVIDIA-H100-80GB-HBM3``).
Anything that can't be determined is ``None`` and ``unavailable[<field>]`` says why. The hostname
is stored only as a salted hash. torch is not imported (that alone takes seconds): versions come
from package metadata, and CUDA facts from NVML and the driver.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench import __version__
from bench.power_sources import AmdSmiGpus, NvmlGpus, call_or_none, error_text, text_or_none

_HOST_SALT = b"nanobench-host-v1:"
_SUBPROCESS_TIMEOUT_S = 2.0


class _Unavailable:
    """Collects ``field -> reason`` for everything describe_system could not determine."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def note(self, field: str, reason: str) -> None:
        self.reasons[field] = reason


def hash_hostname(hostname: str) -> str:
    """A stable, non-reversible tag for a hostname (same host -> same tag, raw name never stored)."""
    return hashlib.sha256(_HOST_SALT + hostname.encode("utf-8")).hexdigest()[:16]


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        out = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if out:
            return out.strip()
    return platform.processor() or None


def _os_release() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def _run(cmd: list[str], cwd: str | os.PathLike[str] | None = None) -> str | None:
    """stdout of a short command, or None if it is missing, fails or times out."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_SUBPROCESS_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _package_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def describe_cpu(missing: _Unavailable) -> dict[str, Any]:
    model = _cpu_model()
    if model is None:
        missing.note("cpu.model", "no model name in /proc/cpuinfo or platform.processor()")
    physical = psutil.cpu_count(logical=False)
    if physical is None:
        missing.note("cpu.physical_cores", "psutil could not count physical cores")
    freq = None
    try:
        f = psutil.cpu_freq()
        freq = round(f.max or f.current, 1) if f else None
    except (OSError, NotImplementedError, AttributeError):
        freq = None
    if freq is None:
        missing.note("cpu.max_mhz", "CPU frequency not exposed")
    return {
        "model": model,
        "architecture": platform.machine() or None,
        "physical_cores": physical,
        "logical_cores": psutil.cpu_count(logical=True),
        "max_mhz": freq,
        "sockets": _socket_count(),
    }


def _socket_count() -> int | None:
    try:
        ids = {
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
            if line.startswith("physical id")
        }
    except OSError:
        return None
    return len(ids) or None


def describe_gpus(missing: _Unavailable, nvml: Any = None, amdsmi: Any = None) -> dict[str, Any]:
    """GPU names, UUIDs, memory, power limits, driver and CUDA driver version via NVML; AMD GPUs via
    AMD SMI when NVML has none (``amdsmi=False`` skips that)."""
    if nvml is False:
        gpus, reason = None, "GPU query disabled"
    else:
        gpus, reason = NvmlGpus.open(nvml)
    if gpus is None and amdsmi is not False and nvml is not False:
        amd = describe_amd_gpus(amdsmi)
        if amd is not None and not isinstance(amd, str):
            return amd
        reason = f"{reason}; {amd}" if amd else reason
    if gpus is None:
        missing.note("gpus", reason or "NVML unavailable")
        return {"count": 0, "devices": [], "driver_version": None, "cuda_driver_version": None}
    try:
        m = gpus.nvml
        devices = []
        for index, handle, no_counter in zip(gpus.indices, gpus.handles, gpus.counter_unsupported):
            mem = call_or_none(m, "nvmlDeviceGetMemoryInfo", handle)
            limit = call_or_none(m, "nvmlDeviceGetEnforcedPowerLimit", handle) or call_or_none(
                m, "nvmlDeviceGetPowerManagementLimit", handle
            )
            name = call_or_none(m, "nvmlDeviceGetName", handle)
            uuid = call_or_none(m, "nvmlDeviceGetUUID", handle)
            devices.append(
                {
                    "index": index,
                    "name": error_text(name) if name is not None else None,
                    "uuid": error_text(uuid) if uuid is not None else None,
                    "memory_bytes": getattr(mem, "total", None),
                    "power_limit_watts": limit / 1000.0 if isinstance(limit, (int, float)) else None,
                    "energy_counter": no_counter is None,
                }
            )
        driver = call_or_none(m, "nvmlSystemGetDriverVersion")
        cuda = call_or_none(m, "nvmlSystemGetCudaDriverVersion")
        cuda_text = f"{cuda // 1000}.{(cuda % 1000) // 10}" if isinstance(cuda, int) else None
        if cuda_text is None:
            missing.note("gpus.cuda_driver_version", "NVML did not report a CUDA driver version")
        return {
            "count": len(devices),
            "devices": devices,
            "driver_version": error_text(driver) if driver is not None else None,
            "cuda_driver_version": cuda_text,
        }
    finally:
        gpus.close()


def describe_amd_gpus(amdsmi: Any = None) -> dict[str, Any] | str:
    """AMD GPUs via AMD SMI: model, VRAM, power cap, driver, ROCm version, xGMI topology; or the reason
    (a string) why not."""
    gpus, reason = AmdSmiGpus.open(amdsmi)
    if gpus is None:
        return reason or "AMD SMI unavailable"
    m = gpus.amdsmi
    try:
        devices = []
        for index, handle, no_counter in zip(gpus.indices, gpus.handles, gpus.counter_unsupported):
            asic = call_or_none(m, "amdsmi_get_gpu_asic_info", handle) or {}
            vram = call_or_none(m, "amdsmi_get_gpu_vram_info", handle) or {}
            cap = call_or_none(m, "amdsmi_get_power_cap_info", handle) or {}
            vram_mb = vram.get("vram_size")
            cap_uw = cap.get("power_cap")
            devices.append({
                "index": index,
                "name": asic.get("market_name"),
                "uuid": text_or_none(call_or_none(m, "amdsmi_get_gpu_device_uuid", handle)),
                "pci_bus_id": text_or_none(call_or_none(m, "amdsmi_get_gpu_device_bdf", handle)),
                "arch": asic.get("target_graphics_version"),
                "memory_bytes": int(vram_mb) * 2**20 if isinstance(vram_mb, (int, float)) else None,
                "power_limit_watts": cap_uw / 1e6 if isinstance(cap_uw, (int, float)) else None,
                "energy_counter": no_counter is None,
            })
        driver = (call_or_none(m, "amdsmi_get_gpu_driver_info", gpus.handles[0]) or {}).get("driver_version")
        return {
            "count": len(devices),
            "vendor": "amd",
            "devices": devices,
            "driver_version": driver,
            "cuda_driver_version": None,
            "rocm_version": rocm_version(),
            "topology": amd_link_topology(m, gpus.handles),
        }
    finally:
        gpus.close()


def amd_link_topology(amdsmi: Any, handles: list[Any]) -> str | None:
    """A GPU x GPU table of link types (XGMI, PCIE) from AMD SMI, like ``amd-smi topology``'s."""
    if len(handles) < 2:
        return None
    names = [f"GPU{i}" for i in range(len(handles))]
    rows = ["\t".join(["", *names])]
    for i, a in enumerate(handles):
        cells = []
        for j, b in enumerate(handles):
            if i == j:
                cells.append("X")
                continue
            link = call_or_none(amdsmi, "amdsmi_topo_get_link_type", a, b) or {}
            kind = link.get("type")
            cells.append(getattr(kind, "name", None) or (str(kind) if kind is not None else "?"))
        rows.append("\t".join([names[i], *cells]))
    return "\n".join(rows) + "\n"


def rocm_version() -> str | None:
    """ROCm version: torch's HIP version when torch is already imported, else /opt/rocm/.info/version."""
    torch_mod = sys.modules.get("torch")
    hip = getattr(getattr(torch_mod, "version", None), "hip", None) if torch_mod else None
    if hip:
        return str(hip)
    for root in (os.environ.get("ROCM_PATH"), "/opt/rocm"):
        if root:
            try:
                return (Path(root) / ".info" / "version").read_text(encoding="utf-8").strip() or None
            except OSError:
                continue
    return None




def gpu_topology(missing: _Unavailable) -> str | None:
    """``nvidia-smi topo -m`` output, if the binary exists."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        missing.note("gpu_topology", "nvidia-smi not found on PATH")
        return None
    out = _run([exe, "topo", "-m"])
    if out is None:
        missing.note("gpu_topology", "nvidia-smi topo -m failed")
    return out


def describe_software(missing: _Unavailable) -> dict[str, Any]:
    torch_version = _package_version("torch")
    if torch_version is None:
        missing.note("software.torch", "torch is not installed")
    torch_mod = sys.modules.get("torch")  # only read what's already imported
    cuda_runtime = getattr(getattr(torch_mod, "version", None), "cuda", None) if torch_mod else None
    nccl = _package_version("nvidia-nccl-cu13", "nvidia-nccl-cu12", "nvidia-nccl-cu11")
    if nccl is None:
        missing.note("software.nccl", "no nvidia-nccl wheel installed (CPU-only torch or system NCCL)")
    if cuda_runtime is None:
        cuda_runtime = _package_version("nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu11")
    if cuda_runtime is None:
        missing.note("software.cuda_runtime", "no CUDA runtime found (CPU-only torch?)")
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "torch": torch_version,
        "cuda_runtime": cuda_runtime,
        "nccl": nccl,
        "nvidia_ml_py": _package_version("nvidia-ml-py"),
        "numpy": _package_version("numpy"),
        "nanobench": __version__,
    }


def describe_source(missing: _Unavailable, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """git commit and dirty flag of the nanobench source tree (where this file lives)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    if shutil.which("git") is None:
        missing.note("source.git_commit", "git not found on PATH")
        return {"git_commit": None, "git_dirty": None}
    commit = _run(["git", "rev-parse", "--verify", "HEAD"], cwd=root)
    if commit is None:
        missing.note("source.git_commit", f"{root} is not a git checkout with a commit")
        return {"git_commit": None, "git_dirty": None}
    status = _run(["git", "status", "--porcelain"], cwd=root)  # untracked (non-ignored) files count as dirty
    if status is None:
        missing.note("source.git_dirty", "git status failed")
    return {"git_commit": commit.strip(), "git_dirty": None if status is None else bool(status.strip())}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


# Marketing noise in CPU/GPU model strings that makes a machine slug hard to read.
_MODEL_NOISE = re.compile(
    r"\((?:R|TM|C)\)|\b(?:CPU|Processor|with Radeon Graphics)\b|\b\d+-Core\b|@\s*[\d.]+\s*[GM]Hz", re.IGNORECASE
)


def readable_model(text: str) -> str:
    """``Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz`` -> ``Intel Xeon Platinum 8480+``: the words that identify it."""
    return " ".join(_MODEL_NOISE.sub(" ", text).split()) or text.strip()


def machine_id(gpus: dict[str, Any], cpu: dict[str, Any]) -> str:
    """``<count>x<GPU model>`` (mixed GPUs joined by ``+``), or ``cpu-<model>-<n>c`` without GPUs."""
    if gpus["count"]:
        names: dict[str, int] = {}
        for dev in gpus["devices"]:
            key = _slug(readable_model(dev["name"] or "unknown-gpu"))
            names[key] = names.get(key, 0) + 1
        return "+".join(f"{n}x{name}" for name, n in names.items())
    return f"cpu-{_slug(readable_model(cpu['model'] or platform.machine() or 'unknown'))}-{cpu['logical_cores']}c"


def describe_system(
    *, nvml: Any = None, amdsmi: Any = None, source_root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The system description (see module docstring). ``nvml`` / ``amdsmi`` inject modules (or False)."""
    missing = _Unavailable()
    cpu = describe_cpu(missing)
    gpus = describe_gpus(missing, nvml, amdsmi)
    software = describe_software(missing)
    if gpus.get("vendor") == "amd":
        topology = gpus.pop("topology")
        software["rocm"] = gpus.get("rocm_version")
        if topology is None and gpus["count"] > 1:
            missing.note("gpu_topology", "AMD SMI reported no links")
    else:
        topology = gpu_topology(missing) if gpus["count"] else None
    if not gpus["count"]:
        missing.reasons.setdefault("gpu_topology", "no GPU")
    ram = psutil.virtual_memory().total
    gpu0 = gpus["devices"][0] if gpus["devices"] else {}
    os_name = _os_release() or platform.system()
    info: dict[str, Any] = {
        "machine_id": machine_id(gpus, cpu),
        "hostname_sha256": hash_hostname(socket.gethostname()),
        "accelerator_count": gpus["count"],
        "cpu": cpu,
        "memory": {"total_bytes": ram},
        "gpus": gpus,
        "gpu_topology": topology,
        "os": {"name": os_name, "system": platform.system(), "kernel": platform.release()},
        "software": software,
        "source": describe_source(missing, source_root),
    }
    info["mlperf"] = {
        "number_of_nodes": 1,
        "host_processors_per_node": cpu["sockets"],
        "host_processor_model_name": cpu["model"],
        "host_processor_core_count": cpu["physical_cores"],
        "host_processor_vcpu_count": cpu["logical_cores"],
        "host_processor_frequency": f"{cpu['max_mhz']} MHz" if cpu["max_mhz"] else None,
        "host_memory_capacity": f"{ram / 2**30:.0f} GiB",
        "accelerators_per_node": gpus["count"],
        "accelerator_model_name": gpu0.get("name"),
        "accelerator_memory_capacity": f"{gpu0['memory_bytes'] / 2**30:.0f} GiB" if gpu0.get("memory_bytes") else None,
        "accelerator_interconnect_topology": "see gpu_topology" if topology else None,
        "framework": f"PyTorch {software['torch']}" if software["torch"] else None,
        "operating_system": f"{os_name} (kernel {platform.release()})",
        "other_software_stack": {k: software[k] for k in ("python", "cuda_runtime", "nccl", "rocm") if software.get(k)},
    }
    info["unavailable"] = missing.reasons
    return info
