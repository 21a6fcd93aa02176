"""Learning-rate and momentum schedules (spec section 5.1, ORIG)."""

from __future__ import annotations


def lr_multiplier(step: int, num_steps: int, *, warmup_ratio: float, warmdown_ratio: float, final_lr_frac: float) -> float:
    """Linear warmup, constant, then linear warmdown over the last `warmdown_ratio` of steps to `final_lr_frac`."""
    warmup = round(warmup_ratio * num_steps)
    warmdown = round(warmdown_ratio * num_steps)
    if step < warmup:
        return (step + 1) / warmup
    if step <= num_steps - warmdown:
        return 1.0
    progress = (num_steps - step) / warmdown
    return progress + (1 - progress) * final_lr_frac


def muon_momentum(step: int, *, start: float, end: float, ramp_steps: int) -> float:
    """Linear ramp from `start` to `end` over the first `ramp_steps` steps."""
    frac = min(step / ramp_steps, 1.0) if ramp_steps > 0 else 1.0
    return (1 - frac) * start + frac * end
