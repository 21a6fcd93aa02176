"""Peak dense bf16 FLOP/s by accelerator name (spec section 6), for MFU."""

from __future__ import annotations

# More specific names first: the first substring match wins.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2.5e15),
    ("Grace Blackwell", 2.5e15),
    ("B200", 2.25e15),
    ("B100", 1.8e15),
    ("H200 NVL", 836e12),
    ("H200 PCIe", 836e12),
    ("H200", 989e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H800 NVL", 989e12),
    ("H800", 756e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("A40", 149.7e12),
    ("A30", 165e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("MI355", 2.5e15),
    ("MI325", 1.3074e15),
    ("MI300X", 1.3074e15),
    ("MI300A", 980.6e12),
    ("MI250X", 383e12),
    ("MI250", 362.1e12),
    ("5090", 209.5e12),
    ("4090", 165.2e12),
    ("3090", 71e12),
)


def peak_flops(device_name: str | None) -> float | None:
    """Peak bf16 FLOP/s of one device, or None when unknown (CPU, unlisted GPUs): MFU is then not reported."""
    if not device_name:
        return None
    for key, value in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def device_name(device) -> str | None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name(device)
    return None
