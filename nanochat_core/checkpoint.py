"""Checkpoints: model weights, per-rank optimizer state, loader state, RNG state and metadata.

Layout in `<artifacts>/checkpoints/<stage>/`: `model_<step:06d>.pt` (rank 0), `meta_<step:06d>.json`
(rank 0, written last: a step whose meta exists is complete), `optim_<step:06d>_rank<r>.pt` and
`state_<step:06d>_rank<r>.pt` (loader + RNG, every rank). All writes are atomic.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from nanochat_core.atomic import atomic_open, atomic_write_text
from nanochat_core.model import GPT, GPTConfig

STAGES = ("base", "mid", "sft", "rl")


def checkpoint_dir(artifacts_dir: str | os.PathLike[str], stage: str) -> Path:
    if stage not in STAGES:
        raise ValueError(f"unknown checkpoint stage {stage!r}; expected one of {STAGES}")
    return Path(artifacts_dir) / "checkpoints" / stage


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_open(path) as fh:
        torch.save(obj, fh)


def _atomic_json(obj: Any, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def save_checkpoint(
    directory: str | os.PathLike[str],
    step: int,
    *,
    model: GPT,
    meta: dict[str, Any],
    rank: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    barrier=None,
    local_rank: int | None = None,
) -> Path:
    """Write one checkpoint. Every rank calls this; local rank 0 of every node (`local_rank`, default:
    `rank`) writes the model and, after `barrier()` (so every rank's shard is on disk), the meta file
    that marks the step complete. Nodes share no filesystem: each node needs its own copy."""
    writer = (rank if local_rank is None else local_rank) == 0
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if optimizer_state is not None:
        _atomic_torch_save(optimizer_state, directory / f"optim_{step:06d}_rank{rank}.pt")
    if train_state is not None:
        _atomic_torch_save(train_state, directory / f"state_{step:06d}_rank{rank}.pt")
    if writer:
        state = {k: v.detach().to("cpu") for k, v in _unwrap(model).state_dict().items()}
        _atomic_torch_save(state, directory / f"model_{step:06d}.pt")
    if barrier is not None:
        barrier()
    if writer:
        full_meta = {"step": step, "model_config": asdict(_unwrap(model).config), **meta}
        _atomic_json(full_meta, directory / f"meta_{step:06d}.json")
    if barrier is not None:
        barrier()
    _prune_older(directory, step, rank, writer)
    return directory / f"model_{step:06d}.pt"


def _prune_older(directory: Path, step: int, rank: int, writer: bool) -> None:
    """Once `step` is complete, keep it and the complete step before it, and delete the files of older steps
    (this rank's optimizer/loader state; the writer's weights and meta, meta first so a step stops counting
    as complete before its weights go). Intermediate checkpoints are for resuming only, and a d20 one with
    optimizer state is gigabytes: with a 10-minute cadence a speedrun would otherwise keep ~20 of them."""
    complete = [int(m.group(1)) for p in directory.glob("meta_*.json") if (m := re.search(r"^meta_(\d+)\.json$", p.name))]
    keep_from = max((s for s in complete if s < step), default=step)

    def older(pattern: str, regex: str) -> list[Path]:
        found = []
        for path in directory.glob(pattern):
            m = re.search(regex, path.name)
            if m and int(m.group(1)) < keep_from:
                found.append(path)
        return found

    doomed = older(f"optim_*_rank{rank}.pt", r"^optim_(\d+)_rank") + older(f"state_*_rank{rank}.pt", r"^state_(\d+)_rank")
    if writer:
        doomed = older("meta_*.json", r"^meta_(\d+)\.json$") + older("model_*.pt", r"^model_(\d+)\.pt$") + doomed
    for path in doomed:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def latest_step(directory: str | os.PathLike[str]) -> int | None:
    """The newest *complete* step (its meta file exists), or None."""
    steps = [int(m.group(1)) for p in glob.glob(os.path.join(directory, "meta_*.json")) if (m := re.search(r"meta_(\d+)\.json$", p))]
    return max(steps) if steps else None


def load_meta(directory: str | os.PathLike[str], step: int | None = None) -> dict[str, Any]:
    step = latest_step(directory) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no complete checkpoint in {directory}")
    return json.loads((Path(directory) / f"meta_{step:06d}.json").read_text())


def load_model(
    directory: str | os.PathLike[str], device: torch.device | str, step: int | None = None
) -> tuple[GPT, dict[str, Any]]:
    """Rebuild the model of a checkpoint on `device` (eval mode) and return it with its meta."""
    meta = load_meta(directory, step)
    config = GPTConfig(**meta["model_config"])
    with torch.device("meta"):
        model = GPT(config)
    device = torch.device(device)
    model.to_empty(device=device)
    model.init_weights()  # sets the rotary tables and the CUDA wte dtype; weights are overwritten below
    state = torch.load(Path(directory) / f"model_{meta['step']:06d}.pt", map_location=device, weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta


def load_rank_state(directory: str | os.PathLike[str], step: int, rank: int) -> tuple[dict | None, dict | None]:
    """(optimizer_state, train_state) of one rank at one step; None where absent."""
    d = Path(directory)
    out = []
    for kind in ("optim", "state"):
        p = d / f"{kind}_{step:06d}_rank{rank}.pt"
        out.append(torch.load(p, map_location="cpu", weights_only=False) if p.exists() else None)
    return out[0], out[1]


def model_sha256(directory: str | os.PathLike[str], step: int | None = None) -> str:
    """sha256 of a checkpoint's weight file (recorded in the result bundle)."""
    step = latest_step(directory) if step is None else step
    h = hashlib.sha256()
    with open(Path(directory) / f"model_{step:06d}.pt", "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unwrap(model: torch.nn.Module) -> GPT:
    return getattr(model, "_orig_mod", model)
