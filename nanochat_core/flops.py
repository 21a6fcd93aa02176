"""Peak dense FLOP/s of one accelerator by its name (spec section 6), for MFU.

Names are matched on whole tokens, never on substrings: "NVIDIA L40" is an L40 (181 TFLOP/s), not an
L4 (121); "NVIDIA H800" (SXM) is 989, "NVIDIA H800 PCIe" 756. A row matches when its model token is
one of the name's tokens and every qualifier token (PCIe, NVL) is too; rows with qualifiers come
first. Figures are vendor datasheet peaks without sparsity. AMD's MI250X and MI250 appear to torch
as two devices per card (one per GCD), so their rows are per GCD: half the card's figure.

bf16 is the training precision; GPUs without bf16 (T4, V100) train in fp32 (nanochat_core.device)
and their MFU is against the fp32 peak (:data:`PEAK_FP32_FLOPS`).
"""

from __future__ import annotations

import re

# (model token, qualifier tokens, FLOP/s). Most specific first within a model.
PEAK_BF16_FLOPS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    # NVIDIA Blackwell
    ("GB200", (), 2.5e15),
    ("B200", (), 2.25e15),
    ("B100", (), 1.75e15),
    # NVIDIA Hopper
    ("GH200", (), 989e12),
    ("H200", ("NVL",), 835e12),
    ("H200", ("PCIE",), 835e12),
    ("H200", (), 989e12),
    ("H100", ("NVL",), 835e12),
    ("H100", ("PCIE",), 756e12),
    ("H100", (), 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H800", ("PCIE",), 756e12),
    ("H800", (), 989e12),  # SXM: the same compute as the H100 SXM
    # NVIDIA Ampere / Ada data-center
    ("A100", (), 312e12),
    ("A800", (), 312e12),
    ("A40", (), 149.7e12),
    ("A30", (), 165e12),
    ("A10", (), 125e12),
    ("L40S", (), 362e12),
    ("L40", (), 181e12),
    ("L4", (), 121e12),
    # NVIDIA GeForce
    ("5090", (), 209.5e12),
    ("4090", (), 165.2e12),
    ("3090", (), 71e12),
    # AMD Instinct
    ("MI355X", (), 2.5e15),
    ("MI350X", (), 2.3e15),
    ("MI325X", (), 1.3074e15),
    ("MI300X", (), 1.3074e15),
    ("MI300A", (), 980.6e12),
    ("MI250X", (), 191.5e12),  # per GCD (383 TFLOP/s per card, two devices)
    ("MI250", (), 181.0e12),  # per GCD (362 per card)
    ("MI210", (), 181.0e12),
)

# GPUs that have no bf16 and train in fp32 (below sm_80): their fp32 (non-tensor) peak.
PEAK_FP32_FLOPS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("V100", ("PCIE",), 14.0e12),
    ("V100", (), 15.7e12),  # SXM2
    ("T4", (), 8.1e12),
)


def name_tokens(name: str) -> set[str]:
    """Upper-case alphanumeric tokens of a device name ("NVIDIA A100-SXM4-80GB" -> {NVIDIA, A100, SXM4, 80GB})."""
    return {t for t in re.split(r"[^A-Za-z0-9]+", name.upper()) if t}


def _lookup(table, name: str) -> float | None:
    tokens = name_tokens(name)
    for model, qualifiers, value in table:
        if model in tokens and all(q in tokens for q in qualifiers):
            return value
    return None


def peak_flops(device_name: str | None, precision: str = "bf16") -> float | None:
    """Peak FLOP/s of one device at ``precision`` ("bf16" or "fp32"), or None when unknown (CPU,
    unlisted GPUs): MFU is then not reported."""
    if not device_name:
        return None
    return _lookup(PEAK_FP32_FLOPS if precision == "fp32" else PEAK_BF16_FLOPS, device_name)


def device_name(device) -> str | None:
    """The accelerator's name as torch reports it (CUDA and ROCm, XPU), None on CPU and MPS."""
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        return torch.cuda.get_device_name(device)
    if kind == "xpu":
        return torch.xpu.get_device_name(device)
    return None
