"""Which accelerator this process trains on, and what it supports: precision, compile, collectives.

`--device` accepts ``auto | cuda | rocm | mps | xpu | cpu``:

- ``cuda``: NVIDIA (a CUDA build of torch). A ROCm build of torch also answers to ``cuda`` (it uses
  the ``torch.cuda`` API), and is recorded as vendor AMD.
- ``rocm``: AMD Instinct / Radeon through a ROCm (HIP) build of torch; torch's device type is still
  ``cuda`` and the collective backend is still called ``nccl`` (it is RCCL underneath).
- ``mps``: Apple-silicon GPUs (Metal). One process, fp32, no ``torch.compile``.
- ``xpu``: Intel GPUs (``torch.xpu``). bf16 autocast where the device supports it, collectives
  through ``xccl`` when this torch has it (else ``gloo``), no ``torch.compile`` by default.
- ``auto``: the first present of cuda/rocm, xpu, mps, else cpu; :attr:`DeviceChoice.reason` says why.

A requested device that is absent raises :class:`DeviceUnavailable` with one line saying what is
missing (e.g. a CPU-only torch asked for ``cuda``); callers print it, never a traceback.

Precision: bf16 autocast where the hardware has bf16 (NVIDIA sm_80+, ROCm devices reporting bf16,
XPU reporting bf16); NVIDIA GPUs below sm_80 (T4, V100) and Apple MPS run fp32 with the reason
recorded (:func:`precision_for`). Everything takes an injectable ``torch`` module so it is tested on a
CPU with fakes.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

DEVICE_CHOICES = ("auto", "cuda", "rocm", "mps", "xpu", "cpu")


class DeviceUnavailable(ValueError):
    """The requested device is not usable here; the message is one line naming what is missing."""


@dataclass(frozen=True)
class DeviceChoice:
    """What `--device X` resolved to."""

    requested: str
    kind: str  # cuda | rocm | mps | xpu | cpu (what runs)
    torch_type: str  # torch.device type: cuda (also for rocm) | mps | xpu | cpu
    reason: str  # why this one (for auto: what was found)


@dataclass
class Precision:
    """The autocast dtype (None: plain fp32) and why."""

    autocast_dtype: str | None  # "bfloat16" or None
    reason: str


@dataclass
class DeviceInfo:
    """The record of the device a stage ran on (goes into the stage's result and the STAGE_START event)."""

    kind: str
    torch_type: str
    vendor: str
    name: str | None
    precision: str  # "bf16" | "fp32"
    precision_reason: str
    compile_default: bool
    compile_reason: str
    dist_backend: str
    capability: str | None = None
    memory_bytes: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _torch(torch_mod: Any = None) -> Any:
    if torch_mod is not None:
        return torch_mod
    import torch

    return torch


def _is_rocm(t: Any) -> bool:
    return bool(getattr(getattr(t, "version", None), "hip", None))


def _cuda_present(t: Any) -> tuple[bool, str]:
    """(usable, reason) for torch.cuda (NVIDIA or ROCm)."""
    version = getattr(t, "__version__", "?")
    built = bool(getattr(t.version, "cuda", None)) or _is_rocm(t)
    if not built:
        return False, f"this torch ({version}) is a CPU-only build without CUDA/ROCm; install a CUDA or ROCm build of torch"
    try:
        available = bool(t.cuda.is_available())
    except Exception as exc:  # noqa: BLE001 - a broken driver must not traceback
        return False, f"torch.cuda failed to initialise: {exc}"
    if not available:
        what = "ROCm" if _is_rocm(t) else "CUDA"
        return False, f"this torch ({version}) has {what} but sees no GPU (driver not loaded, or CUDA_VISIBLE_DEVICES/HIP_VISIBLE_DEVICES hides them)"
    return True, f"{t.cuda.device_count()} {'ROCm' if _is_rocm(t) else 'CUDA'} GPU(s)"


def _mps_present(t: Any) -> tuple[bool, str]:
    backend = getattr(getattr(t, "backends", None), "mps", None)
    if backend is None:
        return False, "this torch has no MPS backend"
    try:
        if backend.is_available():
            return True, "Apple MPS GPU"
        built = backend.is_built()
    except Exception as exc:  # noqa: BLE001
        return False, f"MPS query failed: {exc}"
    return False, "this torch was built without MPS" if not built else "MPS is built but not available (needs macOS 12.3+ on Apple silicon)"


def _xpu_present(t: Any) -> tuple[bool, str]:
    xpu = getattr(t, "xpu", None)
    if xpu is None:
        return False, "this torch has no torch.xpu (Intel GPU support needs torch >= 2.5 built with XPU)"
    try:
        if xpu.is_available():
            return True, f"{xpu.device_count()} Intel XPU(s)"
    except Exception as exc:  # noqa: BLE001
        return False, f"torch.xpu failed to initialise: {exc}"
    return False, "torch.xpu sees no Intel GPU (driver or XPU build of torch missing)"


def probe_devices(torch_mod: Any = None) -> dict[str, tuple[bool, str]]:
    """``kind -> (present, reason)`` for every kind, CPU included."""
    t = _torch(torch_mod)
    cuda_ok, cuda_reason = _cuda_present(t)
    rocm = _is_rocm(t)
    version = getattr(t, "__version__", "?")
    if rocm:
        rocm_entry = (cuda_ok, cuda_reason)
    elif getattr(t.version, "cuda", None):
        rocm_entry = (False, f"this torch ({version}) is a CUDA (NVIDIA) build, not ROCm; install torch from the ROCm index")
    else:
        rocm_entry = (False, f"this torch ({version}) is not a ROCm build; install torch from the ROCm index")
    return {
        "cuda": (cuda_ok, cuda_reason),
        "rocm": rocm_entry,
        "xpu": _xpu_present(t),
        "mps": _mps_present(t),
        "cpu": (True, "CPU"),
    }


def resolve_device(requested: str = "auto", torch_mod: Any = None) -> DeviceChoice:
    """`--device` value -> what runs. Raises :class:`DeviceUnavailable` (one line) when it is absent."""
    req = (requested or "auto").strip().lower()
    base = req.split(":", 1)[0]
    if base not in DEVICE_CHOICES:
        raise DeviceUnavailable(f"unknown device {requested!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
    t = _torch(torch_mod)
    found = probe_devices(t)
    if base == "auto":
        for kind in ("rocm", "cuda", "xpu", "mps"):
            ok, why = found[kind]
            if ok:
                return DeviceChoice(req, kind, _torch_type(kind), f"auto: found {why}")
        missing = "; ".join(f"{k}: {found[k][1]}" for k in ("cuda", "xpu", "mps"))
        return DeviceChoice(req, "cpu", "cpu", f"auto: no accelerator ({missing})")
    ok, why = found[base]
    if not ok:
        raise DeviceUnavailable(f"--device {base} is not available: {why}")
    kind = "rocm" if base == "cuda" and _is_rocm(t) else base
    return DeviceChoice(req, kind, _torch_type(kind), f"requested {base}: {why}")


def _torch_type(kind: str) -> str:
    return "cuda" if kind in ("cuda", "rocm") else kind


def dist_backend(kind: str, torch_mod: Any = None) -> str:
    """Collective backend for a device kind: NCCL on CUDA and ROCm (RCCL answers to "nccl"), XCCL on XPU
    when this torch has it, gloo otherwise."""
    if kind in ("cuda", "rocm"):
        return "nccl"
    if kind == "xpu":
        t = _torch(torch_mod)
        dist = getattr(t, "distributed", None)
        has = getattr(dist, "is_xccl_available", None)
        with contextlib.suppress(Exception):
            if has is not None and has():
                return "xccl"
    return "gloo"


def precision_for(kind: str, device_index: int = 0, torch_mod: Any = None) -> Precision:
    """bf16 autocast where the device has bf16, else fp32 with the reason (T4/V100, MPS, old XPUs)."""
    t = _torch(torch_mod)
    if kind == "cuda":
        major, minor = t.cuda.get_device_capability(device_index)
        name = t.cuda.get_device_name(device_index)
        if major < 8:
            return Precision(None, f"{name} is sm_{major}{minor}: no bf16 tensor cores (needs sm_80+), training runs in fp32")
        return Precision("bfloat16", f"{name} is sm_{major}{minor}: bf16 autocast")
    if kind == "rocm":
        name = t.cuda.get_device_name(device_index)
        supported = False
        with contextlib.suppress(Exception):
            supported = bool(t.cuda.is_bf16_supported())
        if not supported:
            return Precision(None, f"{name}: torch reports no bf16 support, training runs in fp32")
        return Precision("bfloat16", f"{name}: bf16 autocast (ROCm)")
    if kind == "xpu":
        supported = False
        with contextlib.suppress(Exception):
            supported = bool(t.xpu.is_bf16_supported())
        return Precision("bfloat16", "XPU: bf16 autocast") if supported else Precision(None, "XPU without bf16: fp32")
    if kind == "mps":
        return Precision(None, "MPS: fp32 (bf16 autocast on Metal is not uniformly supported across macOS versions)")
    return Precision(None, "CPU: fp32")


def compile_default(kind: str) -> tuple[bool, str]:
    """Whether the training model is torch.compiled by default on this kind, and why."""
    if kind in ("cuda", "rocm"):
        return True, f"torch.compile (inductor/triton) on {kind}"
    if kind == "mps":
        return False, "MPS: torch.compile is not supported for training, eager"
    if kind == "xpu":
        return False, "XPU: eager by default (inductor on XPU needs a matching triton-xpu)"
    return False, "CPU: eager (compile time exceeds the savings at this scale)"


def torch_device(choice: DeviceChoice, local_rank: int = 0) -> Any:
    import torch

    if choice.torch_type in ("cuda", "xpu"):
        return torch.device(choice.torch_type, local_rank)
    return torch.device(choice.torch_type)


def set_current(choice: DeviceChoice, local_rank: int = 0, torch_mod: Any = None) -> None:
    t = _torch(torch_mod)
    if choice.torch_type == "cuda":
        t.cuda.set_device(local_rank)
    elif choice.torch_type == "xpu":
        t.xpu.set_device(local_rank)


def synchronize(device: Any, torch_mod: Any = None) -> None:
    """Wait for queued work on ``device`` (no-op on the CPU)."""
    t = _torch(torch_mod)
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        t.cuda.synchronize(device)
    elif kind == "mps":
        t.mps.synchronize()
    elif kind == "xpu":
        t.xpu.synchronize(device)


def vendor_of(kind: str) -> str:
    return {"cuda": "nvidia", "rocm": "amd", "xpu": "intel", "mps": "apple"}.get(kind, "cpu")


def describe_device(choice: DeviceChoice, local_rank: int = 0, torch_mod: Any = None) -> DeviceInfo:
    """The record of what this process runs on (name, memory, capability, precision, compile, backend)."""
    t = _torch(torch_mod)
    name = capability = memory = None
    notes: list[str] = []
    if choice.torch_type == "cuda":
        with contextlib.suppress(Exception):
            props = t.cuda.get_device_properties(local_rank)
            name, memory = props.name, int(props.total_memory)
            if choice.kind == "rocm":
                capability = getattr(props, "gcnArchName", None)
            else:
                capability = f"sm_{props.major}{props.minor}"
    elif choice.torch_type == "xpu":
        with contextlib.suppress(Exception):
            props = t.xpu.get_device_properties(local_rank)
            name, memory = props.name, int(getattr(props, "total_memory", 0)) or None
    elif choice.torch_type == "mps":
        name = "Apple MPS"
        notes.append("MPS shares unified memory with the CPU")
    prec = precision_for(choice.kind, local_rank, t)
    comp, comp_reason = compile_default(choice.kind)
    return DeviceInfo(
        kind=choice.kind, torch_type=choice.torch_type, vendor=vendor_of(choice.kind), name=name,
        precision="bf16" if prec.autocast_dtype else "fp32", precision_reason=prec.reason,
        compile_default=comp, compile_reason=comp_reason, dist_backend=dist_backend(choice.kind, t),
        capability=capability, memory_bytes=memory, notes=notes,
    )


def has_native_bf16(device: Any, torch_mod: Any = None) -> bool:
    """True for a CUDA-type device with bf16 in hardware (NVIDIA sm_80+, ROCm devices reporting bf16):
    where the model keeps its embedding in bf16 and autocasts to bf16, as ORIG does on CUDA."""
    if getattr(device, "type", str(device)) != "cuda":
        return False
    t = _torch(torch_mod)
    index = getattr(device, "index", None) or 0
    if _is_rocm(t):
        with contextlib.suppress(Exception):
            return bool(t.cuda.is_bf16_supported())
        return False
    try:
        return t.cuda.get_device_capability(index)[0] >= 8
    except Exception:  # noqa: BLE001 - no GPU to ask (a "cuda" name on a CPU box): the sm_80+ default
        return True


ALLOCATOR_SETTING = "expandable_segments:True"


def prepare_allocator(choice: DeviceChoice, env: Any = None) -> str | None:
    """Before the first allocation: let the caching allocator grow segments in place (less fragmentation,
    so the probed device batch keeps fitting), unless the user configured it. Returns the setting in force."""
    import os

    env = os.environ if env is None else env
    if choice.torch_type != "cuda":
        return None
    key = "PYTORCH_HIP_ALLOC_CONF" if choice.kind == "rocm" else "PYTORCH_CUDA_ALLOC_CONF"
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", ALLOCATOR_SETTING)
    if key != "PYTORCH_CUDA_ALLOC_CONF":
        env.setdefault(key, ALLOCATOR_SETTING)
    return env.get(key)


def accum_dtype(device: Any) -> Any:
    """The dtype for loss/byte sums: float64, except on MPS, which has no float64 (float32 there)."""
    import torch

    return torch.float32 if getattr(device, "type", str(device)) == "mps" else torch.float64
