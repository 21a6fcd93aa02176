"""The harness's side of `--device auto | cuda | rocm | mps | xpu | cpu`.

Before any phase starts, the requested device is resolved once (``auto`` becomes what is present,
and the run says what it picked); an absent device is refused with one line. Every stage then gets
the resolved kind, so all phases run on the same device. The stages' environment is prepared here:
CUDA numbers devices in PCI bus order (as NVML does, so the power monitor charges exactly the GPUs
the stages use) and the caching allocator uses expandable segments (less fragmentation, the device
batch the auto-sizer picked keeps fitting).
"""

from __future__ import annotations

import os
from typing import Any, MutableMapping

from nanochat_core.device import DEVICE_CHOICES, DeviceChoice, DeviceUnavailable, resolve_device
from bench.power_sources import amd_visible_entries

__all__ = ["DEVICE_CHOICES", "DeviceUnavailable", "resolve", "visible_entries", "prepare_stage_environment", "device_count"]


def resolve(requested: str, torch_mod: Any = None) -> DeviceChoice:
    """`--device` -> the kind that will run; raises DeviceUnavailable (one line) when it is absent."""
    return resolve_device(requested, torch_mod)


def visible_entries(kind: str, env: MutableMapping[str, str] | None = None) -> str | None:
    """The visible-device list the stages honour for ``kind`` (None: every GPU is visible)."""
    env = os.environ if env is None else env
    if kind == "rocm":
        return amd_visible_entries(env)
    return env.get("CUDA_VISIBLE_DEVICES")


def prepare_stage_environment(kind: str, env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set (unless the user already has) the variables the stages inherit; returns what was set."""
    env = os.environ if env is None else env
    wanted: dict[str, str] = {}
    if kind in ("cuda", "rocm"):
        wanted["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA index i == NVML index i
        wanted["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    if kind == "rocm":
        wanted["PYTORCH_HIP_ALLOC_CONF"] = "expandable_segments:True"
    done = {}
    for key, value in wanted.items():
        if key not in env:
            env[key] = value
            done[key] = value
    return done


def device_count(kind: str, torch_mod: Any = None) -> int:
    """GPUs of ``kind`` this process sees (1 for mps and cpu): the default processes per node."""
    if kind in ("cpu", "mps"):
        return 1
    try:
        if torch_mod is None:
            import torch as torch_mod  # type: ignore[no-redef]
        if kind in ("cuda", "rocm"):
            return max(1, int(torch_mod.cuda.device_count()))
        if kind == "xpu":
            return max(1, int(torch_mod.xpu.device_count()))
    except Exception:  # noqa: BLE001 - no usable runtime means one process
        return 1
    return 1
