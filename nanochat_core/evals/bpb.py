"""Bits per byte on fixed token windows (spec section 6, val_bpb)."""

from __future__ import annotations

import math

import torch

from nanochat_core.device import accum_dtype


@torch.no_grad()
def evaluate_bpb(
    model: torch.nn.Module,
    windows: torch.Tensor,
    token_bytes: torch.Tensor,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    autocast=None,
    all_reduce=None,
) -> float:
    """bpb = Σ nats / (ln 2 · Σ bytes) over every target token whose byte length is > 0.

    `windows` is (N, T+1) on the CPU; rows are strided across ranks and the sums all-reduced, so the
    result does not depend on the number of ranks. Special tokens (0 bytes) count for nothing.
    """
    import contextlib

    device = torch.device(device)
    token_bytes = token_bytes.to(device)
    nats = torch.zeros((), dtype=accum_dtype(device), device=device)  # float32 on MPS (no float64 there)
    nbytes = torch.zeros((), dtype=torch.int64, device=device)
    mine = windows[rank::world_size]
    was_training = model.training
    model.eval()
    for start in range(0, len(mine), batch_size):
        batch = mine[start : start + batch_size].to(device)
        x, y = batch[:, :-1], batch[:, 1:]
        with autocast() if autocast else contextlib.nullcontext():
            loss = model(x, y, loss_reduction="none")
        counts = token_bytes[y]
        keep = counts > 0
        nats += (loss.to(nats.dtype) * keep).sum()
        nbytes += counts.sum()
    model.train(was_training)
    if all_reduce is not None:
        nats, nbytes = all_reduce(nats), all_reduce(nbytes)
    total_bytes = int(nbytes.item())
    return math.inf if total_bytes == 0 else float(nats.item()) / (math.log(2) * total_bytes)
