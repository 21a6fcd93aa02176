"""Choose the device batch: the largest power of two that fits in memory and divides the per-rank rows.

On CUDA each candidate is tried for real (forward + backward, catching out-of-memory). On the CPU a
trial would not fail, it would swap, so the activation memory of one row is measured with a small
trial and extrapolated against a memory budget (available RAM by default, or an explicit limit).
"""

from __future__ import annotations

import gc
from typing import Callable

import torch


class BatchSizeError(RuntimeError):
    """Nothing fits: the message says how much memory the smallest batch needs."""


def candidates(rows_per_rank: int, cap: int = 1024) -> list[int]:
    """Powers of two dividing rows_per_rank, largest first."""
    out, b = [], 1
    while b <= min(rows_per_rank, cap):
        if rows_per_rank % b == 0:
            out.append(b)
        b *= 2
    return sorted(out, reverse=True)


def cpu_bytes_per_row(model: torch.nn.Module, seq_len: int, vocab_size: int) -> int:
    """Estimate training activation bytes per row (fp32): saved activations per layer plus logits.

    Per layer and token ≈ 26·d floats (q, k, v, attention out, norms, the 4d MLP hidden pre/post
    activation); logits and their softmax/grad ≈ 3·V floats per token.
    """
    c = model.config
    floats_per_token = c.n_layer * 26 * c.n_embd + 3 * vocab_size
    return int(floats_per_token * 4 * seq_len)


def pick_device_batch_size(
    *,
    rows_per_rank: int,
    device: torch.device,
    try_batch: Callable[[int], None] | None = None,
    bytes_per_row: int | None = None,
    memory_budget_bytes: int | None = None,
    fixed_bytes: int = 0,
) -> int:
    """Largest power-of-two batch that fits. `try_batch(b)` runs one forward+backward at batch b (CUDA);
    `bytes_per_row` + `memory_budget_bytes` decide on the CPU."""
    options = candidates(rows_per_rank)
    if device.type == "cuda" and try_batch is not None:
        for b in options:
            try:
                try_batch(b)
                return b
            except torch.OutOfMemoryError:
                gc.collect()
                torch.cuda.empty_cache()
        raise BatchSizeError(
            f"even a device batch of 1 row does not fit in {torch.cuda.get_device_properties(device).total_memory / 2**30:.1f} GiB "
            "of GPU memory for this preset's model and sequence length"
        )
    if bytes_per_row is None:
        raise ValueError("bytes_per_row is needed to size the batch without a trial")
    if memory_budget_bytes is None:
        import psutil

        memory_budget_bytes = int(psutil.virtual_memory().available * 0.5)
    for b in options:
        if fixed_bytes + b * bytes_per_row <= memory_budget_bytes:
            return b
    raise BatchSizeError(
        f"a device batch of 1 row needs about {(fixed_bytes + bytes_per_row) / 2**30:.2f} GiB but the budget is "
        f"{memory_budget_bytes / 2**30:.2f} GiB; use a smaller preset or a machine with more memory"
    )
