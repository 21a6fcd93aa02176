"""Process-level runtime: device, distributed group, precision, seeding, rank-0 logging.

Nothing here runs at import time. A stage receives a :class:`Runtime` built once by
:func:`init_runtime` and passes it down; there is no global device, dtype or seed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist

from nanochat_core.observer import NullObserver, Observer

log = logging.getLogger("nanochat_core")


@dataclass
class Runtime:
    """Everything a stage needs to know about the process it runs in."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    seed: int = 42
    observer: Observer = field(default_factory=NullObserver)
    artifacts_dir: Path = Path("artifacts")  # tokenizer, checkpoints of this run
    cache_dir: Path = Path.home() / ".cache" / "nanobench"  # downloads shared between runs
    compile: bool = False  # torch.compile the training model (CUDA only by default)
    resume: bool = False  # continue from this stage's latest complete checkpoint, if any

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device_type(self) -> str:
        return self.device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA, plain fp32 elsewhere."""
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def log(self, msg: str) -> None:
        if self.is_main:
            log.info(msg)


def pick_device(requested: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, then CPU (MPS is opt-in: its numerics differ)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def init_runtime(
    *,
    device: str = "auto",
    seed: int = 42,
    observer: Observer | None = None,
    artifacts_dir: str | os.PathLike[str] = "artifacts",
    cache_dir: str | os.PathLike[str] | None = None,
    compile: bool | None = None,
    resume: bool = False,
) -> Runtime:
    """Set up this process: device, torch.distributed (when launched by torchrun), TF32, seeds."""
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        torch.set_float32_matmul_precision("high")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
    seed_everything(seed)
    rt = Runtime(
        device=dev,
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        seed=seed,
        observer=observer or NullObserver(),
        artifacts_dir=Path(artifacts_dir),
        compile=(dev.type == "cuda") if compile is None else compile,
        resume=resume,
    )
    if cache_dir is not None:
        rt.cache_dir = Path(cache_dir)
    return rt


def shutdown_runtime(rt: Runtime) -> None:
    if rt.is_distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed torch (all devices). Python's and numpy's global RNGs are not used by the workload:
    every random choice there goes through an explicit `random.Random(seed)`."""
    torch.manual_seed(seed)
    random.seed(seed)  # only so third-party code that touches it is reproducible too


@contextlib.contextmanager
def torch_rng_state(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with a forked, seeded torch RNG (weight init), leaving the outer state alone."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def print0(msg: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(msg, flush=True)
