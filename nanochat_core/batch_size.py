"""Choose the device batch: the largest power of two that fits in memory and divides the per-rank rows.

On CUDA/ROCm/XPU (:func:`auto_device_batch`) the search starts from nanochat's own device batch for
the depth (scaled to this GPU's memory and the sequence length), each candidate is probed for real
on the model that trains (compiled when compiling, optimizer state allocated: forward + backward,
catching out-of-memory, peak within memory less a headroom), the minimum over ranks is taken, and
the peak-memory statistics are reset afterwards; the choice and why are returned as a record. On the
CPU a trial would not fail, it would swap, so the activation memory of one row is estimated and
checked against a memory budget (available RAM by default, or an explicit limit).
"""

from __future__ import annotations

import gc
import os
import time
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


# ------------------------------------------------------------------------ accelerators: probe for real

# nanochat's own device batch (rows of 2048 tokens) on an 80 GB GPU, by depth: its speedrun scripts
# use 32 at d20, 16 at d26, 8 at d32.
NANOCHAT_DEVICE_BATCH_80GB: tuple[tuple[int, int], ...] = ((20, 32), (26, 16), (32, 8))
NANOCHAT_SEQ_LEN = 2048
REFERENCE_MEMORY_BYTES = 78 * 2**30  # an "80 GB" H100/A100 reports 79.1-79.6 GiB
DEFAULT_HEADROOM = 0.08  # share of device memory kept free beyond the probed peak (optimizer step workspace, fragmentation)


def _pow2_floor(x: float) -> int:
    b = 1
    while b * 2 <= x:
        b *= 2
    return b


def nanochat_start(depth: int, seq_len: int, total_memory_bytes: int) -> tuple[int, str]:
    """The first device batch to probe: nanochat's for the depth, scaled to this GPU's memory and the
    sequence length (a power of two), and why."""
    base_depth, base = next(((d, b) for d, b in NANOCHAT_DEVICE_BATCH_80GB if depth <= d), NANOCHAT_DEVICE_BATCH_80GB[-1])
    scale = (NANOCHAT_SEQ_LEN / seq_len) * (total_memory_bytes / REFERENCE_MEMORY_BYTES)
    start = _pow2_floor(max(1.0, base * scale))
    why = (f"nanochat uses {base} rows at d{base_depth} (seq {NANOCHAT_SEQ_LEN}) on 80 GB; scaled to d{depth}, seq {seq_len}, "
           f"{total_memory_bytes / 2**30:.0f} GiB: start at {start}")
    return start, why


def search_device_batch(
    *,
    rows_per_rank: int,
    start: int,
    probe: Callable[[int], int],
    budget_bytes: int,
    agree: Callable[[int], int] | None = None,
    cleanup: Callable[[], None] | None = None,
) -> tuple[int, list[dict]]:
    """Largest power-of-two batch <= ``start`` dividing ``rows_per_rank`` whose probed peak memory
    (``probe(b)``: forward + backward of the model that trains, optimizer state allocated; raises
    ``torch.OutOfMemoryError`` when it does not fit) stays within ``budget_bytes``. ``agree`` reduces
    the local choice over ranks (minimum; 0 = this rank found none). Returns (batch, what was tried)."""
    tried: list[dict] = []
    local = 0
    for b in [o for o in candidates(rows_per_rank) if o <= max(1, start)]:
        t0 = time.perf_counter()
        peak = None
        try:
            peak = int(probe(b))
        except torch.OutOfMemoryError:
            tried.append({"rows": b, "fits": False, "why": "out of memory", "seconds": time.perf_counter() - t0})
        if peak is None:  # outside the except block: the error's traceback (and its tensors) is gone by now
            if cleanup is not None:
                cleanup()
            continue
        seconds = time.perf_counter() - t0  # includes compiling the model for this shape when compiling
        if peak <= budget_bytes:
            tried.append({"rows": b, "fits": True, "peak_bytes": peak, "seconds": seconds})
            local = b
            break
        tried.append({"rows": b, "fits": False, "peak_bytes": peak, "seconds": seconds,
                      "why": f"peak {peak / 2**30:.2f} GiB > budget {budget_bytes / 2**30:.2f} GiB"})
        if cleanup is not None:
            cleanup()
    chosen = agree(local) if agree is not None else local
    if chosen <= 0:
        raise BatchSizeError(
            f"even a device batch of 1 row does not fit in the {budget_bytes / 2**30:.1f} GiB budget "
            f"(device memory less {DEFAULT_HEADROOM:.0%} headroom) on {'this' if local == 0 else 'another'} rank "
            "for this preset's model and sequence length"
        )
    return chosen, tried


class DeviceMemory:
    """The memory calls the probe needs, for CUDA (NVIDIA and ROCm) and XPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mod = torch.xpu if device.type == "xpu" else torch.cuda

    def total(self) -> int:
        return int(self.mod.get_device_properties(self.device).total_memory)

    def peak(self) -> int:
        return int(self.mod.max_memory_allocated(self.device))

    def reset_peak(self) -> None:
        self.mod.reset_peak_memory_stats(self.device)

    def release(self) -> None:
        gc.collect()
        self.mod.empty_cache()

    def synchronize(self) -> None:
        self.mod.synchronize(self.device)


def probe_fn(train_model: torch.nn.Module, model: torch.nn.Module, seq_len: int, device: torch.device,
             autocast: Callable[[], object], memory: DeviceMemory) -> Callable[[int], int]:
    """A probe for :func:`search_device_batch`: one forward + backward of ``train_model`` (the compiled
    model when compiling) at ``b`` rows; returns the peak bytes allocated (weights, optimizer state,
    activations, gradients). Gradients are dropped afterwards; the weights are not touched."""

    def probe(b: int) -> int:
        memory.release()
        memory.reset_peak()
        x = torch.zeros(b, seq_len, dtype=torch.long, device=device)
        try:
            with autocast():  # type: ignore[attr-defined]
                loss = train_model(x, x)
            loss.backward()
            memory.synchronize()
            return memory.peak()
        finally:
            model.zero_grad(set_to_none=True)
            loss = None
            memory.release()

    return probe


def min_over_ranks(device: torch.device) -> Callable[[int], int]:
    """``agree`` for :func:`search_device_batch`: the minimum over all ranks (every rank must run the same
    batch for the same math per step); a rank that found none contributes 0."""
    import torch.distributed as dist

    def agree(local: int) -> int:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return local
        t = torch.tensor([local], dtype=torch.int64, device=device if device.type != "mps" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    return agree


def auto_device_batch(
    *,
    rows_per_rank: int,
    depth: int,
    seq_len: int,
    train_model: torch.nn.Module,
    model: torch.nn.Module,
    device: torch.device,
    autocast: Callable[[], object],
    compiled: bool,
    headroom: float = DEFAULT_HEADROOM,
) -> tuple[int, dict]:
    """The accelerator path: probe the model that trains (compiled when compiling; the optimizer's state
    is already allocated), start from nanochat's batch, agree on the minimum over ranks, then reset the
    peak-memory statistics so the run's ``peak_memory_bytes`` is the training's, not the probes'.
    Returns (batch, record of the choice and why)."""
    memory = DeviceMemory(device)
    total = memory.total()
    start, start_why = nanochat_start(depth, seq_len, total)
    budget = int(total * (1.0 - headroom))
    chosen, tried = search_device_batch(
        rows_per_rank=rows_per_rank, start=start, budget_bytes=budget, agree=min_over_ranks(device),
        probe=probe_fn(train_model, model, seq_len, device, autocast, memory), cleanup=memory.release,
    )
    memory.release()
    memory.reset_peak()
    local = next((t["rows"] for t in tried if t["fits"]), 0)
    return chosen, {
        "source": "auto",
        "device_batch_size": chosen,
        "start": start,
        "start_reason": start_why,
        "tried": tried,
        "this_rank_choice": local,
        "min_over_ranks": chosen,
        "budget_bytes": budget,
        "device_memory_bytes": total,
        "headroom": headroom,
        "probed_compiled_model": compiled,
        "probe_seconds": sum(t.get("seconds", 0.0) for t in tried),  # compile time of the probed shapes included
        "allocator": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        "why": f"{start_why}; largest that fits within {1 - headroom:.0%} of memory: {local}"
               + (f"; minimum over ranks: {chosen}" if chosen != local else ""),
    }
