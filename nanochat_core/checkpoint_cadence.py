"""When a training stage writes an intermediate checkpoint: a run-time setting, not part of the workload.

The harness passes `--checkpoint-minutes M --checkpoint-every-steps N` to every stage (from bench.toml's
[harness]); a stage checkpoints after step s when any of these holds (s > the step it started from):

- the preset's own `checkpoint_every` divides s (kept for compatibility; 0 in the shipped presets);
- N > 0 and N divides s (a step-based floor, so a short run still gets checkpoints);
- M > 0 and at least M minutes passed since the stage started or last checkpointed.

Checkpoints do not change the math (an interrupted-and-resumed run ends bitwise where an uninterrupted one
does), so the cadence lives outside the workload hash. The time rule is decided on every rank together
(a one-element all-reduce), so all ranks checkpoint at the same step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class CheckpointCadence:
    every_seconds: float = 0.0
    every_steps: int = 0
    clock: object = time.monotonic  # injectable for tests
    _last: float = field(default=-1.0, repr=False)

    def __post_init__(self) -> None:
        if self.every_seconds < 0 or self.every_steps < 0:
            raise ValueError(f"checkpoint cadence must be >= 0, got {self.every_seconds} s / {self.every_steps} steps")
        self.restart()

    def restart(self) -> None:
        """Start the interval now (called when the training loop begins)."""
        self._last = self.clock()

    def due(self, step: int, start_step: int, config_every: int = 0, rt=None) -> bool:
        """Checkpoint after `step`? Resets the timer when it answers True (the caller then saves)."""
        if step <= start_step:
            return False
        hit = any(n > 0 and step % n == 0 for n in (config_every, self.every_steps))
        if not hit and self.every_seconds > 0:
            hit = self.clock() - self._last >= self.every_seconds
            if rt is not None and getattr(rt, "is_distributed", False):
                import torch

                flag = torch.tensor(1.0 if hit else 0.0, device=rt.device)
                rt.all_reduce_sum(flag)
                hit = float(flag.item()) > 0
        if hit:
            self._last = self.clock()
        return hit

    def describe(self) -> str:
        parts = []
        if self.every_seconds > 0:
            parts.append(f"every {self.every_seconds / 60:g} min")
        if self.every_steps > 0:
            parts.append(f"every {self.every_steps} steps")
        return " or ".join(parts) or "only at the end"
