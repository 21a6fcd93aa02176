"""What the post-pretraining stages (mid_train, sft, rl) share: the start checkpoint, the optimizer
built the ORIG way, and checkpoints with per-rank optimizer and loader state for exact resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nanochat_core import checkpoint as ckpt
from nanochat_core.common import Runtime
from nanochat_core.config import WorkloadConfig
from nanochat_core.model import GPT
from nanochat_core.observer import LOG
from nanochat_core.optim import MuonAdamW


def find_source(rt: Runtime, preferred: tuple[str, ...], *, stage: str) -> str:
    """The first checkpoint stage in `preferred` that has a complete checkpoint; logs any fallback."""
    for i, name in enumerate(preferred):
        if ckpt.latest_step(ckpt.checkpoint_dir(rt.artifacts_dir, name)) is not None:
            if i > 0:
                rt.observer.event(LOG, f"{stage}: no {preferred[0]} checkpoint; starting from the {name} checkpoint")
            return name
    raise FileNotFoundError(
        f"{stage}: none of the checkpoints {', '.join(preferred)} exists under {rt.artifacts_dir}/checkpoints"
    )


def load_start_model(rt: Runtime, source: str) -> tuple[GPT, dict[str, Any]]:
    """The weights a stage starts from (train mode), with the source checkpoint's meta."""
    model, meta = ckpt.load_model(ckpt.checkpoint_dir(rt.artifacts_dir, source), rt.device)
    model.train()
    return model, meta


def build_optimizer(cfg: WorkloadConfig, model: GPT, rt: Runtime, *, init_lr_frac: float, momentum: float) -> MuonAdamW:
    """The pretraining optimizer pair (AdamW embedding/unembedding scaled, Muon matrices, wd 0) with
    every learning rate multiplied by `init_lr_frac`, and no gradient clipping: ORIG's midtraining,
    SFT and RL scripts do not clip (only pretraining does)."""
    pc = cfg.pretrain
    return MuonAdamW(
        model.param_groups(),
        model_dim=model.config.n_embd,
        matrix_lr=pc.matrix_lr * init_lr_frac,
        embedding_lr=pc.embedding_lr * init_lr_frac,
        unembedding_lr=pc.unembedding_lr * init_lr_frac,
        betas=pc.adam_betas,
        weight_decay=0.0,
        momentum=momentum,
        grad_clip=0.0,
        rank=rt.rank,
        world_size=rt.world_size,
    )


def save_stage(
    out_dir: Path, step: int, model: GPT, optimizer: MuonAdamW, rt: Runtime, *, meta: dict[str, Any], train_state: dict[str, Any]
) -> None:
    """Checkpoint weights (rank 0), this rank's optimizer shard and loader/RNG state, then the meta."""
    state = {**train_state, "torch_rng": torch.get_rng_state()}
    ckpt.save_checkpoint(
        out_dir, step, model=model, rank=rt.rank, optimizer_state=optimizer.state_dict(), train_state=state,
        meta={**meta, "world_size": rt.world_size}, barrier=rt.barrier, local_rank=rt.local_rank,
    )


def restore_stage(out_dir: Path, model: GPT, optimizer: MuonAdamW, rt: Runtime) -> tuple[int, dict[str, Any]] | None:
    """Load the latest complete checkpoint of `out_dir` into model and optimizer when resuming.

    Returns (step, train_state) or None when not resuming or nothing was saved yet.
    """
    if not rt.resume or (step := ckpt.latest_step(out_dir)) is None:
        return None
    state = torch.load(out_dir / f"model_{step:06d}.pt", map_location=rt.device, weights_only=True)
    model.load_state_dict(state)
    opt_state, train_state = ckpt.load_rank_state(out_dir, step, rt.rank)
    if opt_state is None or train_state is None:
        raise FileNotFoundError(f"checkpoint step {step} in {out_dir} lacks rank {rt.rank}'s optimizer or loader state")
    optimizer.load_state_dict(opt_state)
    torch.set_rng_state(train_state["torch_rng"])
    rt.observer.event(LOG, f"resumed from {out_dir.name} step {step}")
    return step, train_state


def should_checkpoint(step: int, start_step: int, every: int) -> bool:
    return every > 0 and step > start_step and step % every == 0


def mean_over_ranks(rt: Runtime, value: torch.Tensor) -> float:
    """The mean of a per-rank scalar across ranks."""
    t = value.detach().float().reshape(()).clone()
    return float(rt.all_reduce_sum(t).item()) / rt.world_size
