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

from nanochat_core import device as device_mod
from nanochat_core.checkpoint_cadence import CheckpointCadence
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
    autocast_dtype: torch.dtype | str | None = "auto"  # None: fp32; "auto": bf16 on CUDA (hand-built Runtime)
    device_info: dict | None = None  # nanochat_core.device.DeviceInfo.to_dict() of an accelerator
    checkpoint: CheckpointCadence = field(default_factory=CheckpointCadence)  # intermediate checkpoints (run-time setting)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """Local rank 0: the process that writes this node's copy of files every rank reads
        (tokenizer, checkpoints, eval data). Nodes share no filesystem, so each node writes its own."""
        return self.local_rank == 0

    @property
    def node_rank(self) -> int:
        return int(os.environ.get("GROUP_RANK", "0"))

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device_type(self) -> str:
        return self.device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast where the device has bf16 (see nanochat_core.device.precision_for), else fp32."""
        dtype = self.autocast_dtype
        if dtype == "auto":  # a Runtime built by hand: bf16 on CUDA, fp32 elsewhere
            dtype = torch.bfloat16 if self.device.type == "cuda" else None
        if dtype is not None:
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        device_mod.synchronize(self.device)

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
    """`auto | cuda | rocm | mps | xpu | cpu` -> a torch.device (see nanochat_core.device); raises
    DeviceUnavailable with a one-line reason when the requested device is absent."""
    return device_mod.torch_device(device_mod.resolve_device(requested))


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
    choice = device_mod.resolve_device(device)
    device_mod.prepare_allocator(choice)  # expandable segments, before the first CUDA allocation
    dev = device_mod.torch_device(choice, local_rank)
    info = device_mod.describe_device(choice, local_rank) if choice.kind != "cpu" else None
    if dev.type in ("cuda", "xpu"):
        device_mod.set_current(choice, local_rank)
    if dev.type == "cuda":
        torch.set_float32_matmul_precision("high")
    if world_size > 1 and not dist.is_initialized():
        backend = device_mod.dist_backend(choice.kind)  # nccl on CUDA and ROCm (RCCL), xccl on XPU, else gloo
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
        compile=device_mod.compile_default(choice.kind)[0] if compile is None else compile,
        autocast_dtype=(torch.bfloat16 if info.precision == "bf16" else None) if info is not None else None,
        device_info=info.to_dict() if info is not None else None,
        resume=resume,
    )
    if cache_dir is not None:
        rt.cache_dir = Path(cache_dir)
    return rt


def shutdown_runtime(rt: Runtime, *, failed: bool = False) -> None:
    """Leave the process group. After a success every rank meets at a barrier first; after a failure
    (`failed=True`) there is NO barrier: the other ranks may be blocked inside a collective this rank
    will never join, so a barrier here would hang the job until the NCCL watchdog fires (~10 min).
    The group is aborted instead and the caller exits; torchrun then stops the remaining ranks."""
    if not (rt.is_distributed and dist.is_initialized()):
        return
    if failed:
        abort_process_group()
        return
    dist.barrier()
    dist.destroy_process_group()


def abort_process_group() -> None:
    """Tear down the default group without communicating (a failing rank's exit path)."""
    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    try:
        if abort is not None:
            abort()
        else:  # older torch: destroy without a barrier (may block on NCCL; the caller exits anyway)
            dist.destroy_process_group()
    except Exception as exc:  # noqa: BLE001 - best effort on a path that is already failing
        log.warning("process group abort failed: %s", exc)


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
