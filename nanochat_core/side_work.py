"""The work ORIG's speedrun does beside the pipeline proper, run as timed sub-phases of our stages.

nanochat's speedrun.sh also evaluates CORE (500 examples per task) and samples every 2,000 pretraining
steps and at the end, runs `base_loss` (train/val bpb on 20 x 524,288 tokens, and samples), and runs
`chat_eval` on the mid checkpoint as well as the SFT one. All of it is wall time in its "4 hours", so
a run that skips it is not comparable with nanochat's published minutes. `[presets.X.extras]
orig_side_work` turns it on or off; every stage that hosts some of it reports a `side_work` record:
whether it ran and the wall seconds of each sub-phase (device-synchronized at both edges).

Where it runs here: CORE + samples inside `pretrain` (as ORIG's base_train), base_loss inside
`base_eval` (ORIG runs it as its own script just before base_eval), the mid checkpoint's ChatCORE
inside `chat_eval` (ORIG runs it right after midtraining; the total wall time is the same).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from nanochat_core.atomic import atomic_write_text
from nanochat_core.common import Runtime
from nanochat_core.config import WorkloadConfig

SAMPLES_FILE = "samples.json"
CHAT_SAMPLE_MAX_TOKENS = 64
# Fixed user turns the chat model answers greedily (for the report; not scored).
CHAT_SAMPLE_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Why is the sky blue?",
    "What is 12 times 7?",
    "How many r are in the word strawberry?",
    "Write a haiku about the sea.",
    "Who are you?",
)


class SideWork:
    """Whether ORIG's side work runs in this stage, and the wall seconds of each of its sub-phases."""

    def __init__(self, cfg: WorkloadConfig, rt: Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        self.enabled = bool(cfg.extras.orig_side_work)
        if self.enabled and cfg.extras.core_every < 1:
            raise ValueError(f"extras.core_every must be >= 1 when orig_side_work is on, got {cfg.extras.core_every}")
        self.seconds: dict[str, float] = {}
        self.details: dict[str, Any] = {}

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Time one sub-phase (accumulated when it runs several times)."""
        self.rt.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.rt.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def core_due(self, step: int, last_step: bool) -> bool:
        """ORIG's base_train cadence: at every multiple of core_every after step 0, and at the last step."""
        every = self.cfg.extras.core_every
        return self.enabled and (last_step or (step > 0 and step % every == 0))

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"orig_side_work": self.enabled, "seconds": dict(self.seconds)}
        out.update(self.details)
        return out


def write_samples(path: str | Path, samples: Sequence[dict[str, str]]) -> Path:
    """`samples.json`: a list of {"prompt": str, "completion": str}, written atomically."""
    rows = [{"prompt": str(s["prompt"]), "completion": str(s["completion"])} for s in samples]
    path = Path(path)
    atomic_write_text(path, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    return path


@torch.inference_mode()
def chat_samples(engine, tokenizer, prompts: Sequence[str] = CHAT_SAMPLE_PROMPTS, *, max_tokens: int = CHAT_SAMPLE_MAX_TOKENS) -> list[dict[str, str]]:
    """Greedy answers of a chat model to fixed user turns (tool calls run as in evaluation)."""
    from nanochat_core.chat_format import render_for_completion

    out = []
    for prompt in prompts:
        ids = render_for_completion(tokenizer, {"messages": [{"role": "user", "content": prompt}]})
        seqs, _ = engine.generate_batch(ids, num_samples=1, max_tokens=max_tokens, temperature=0.0)
        out.append({"prompt": prompt, "completion": tokenizer.decode(seqs[0][len(ids):])})
    return out


def pretrain_core(model: torch.nn.Module, tokenizer, cfg: WorkloadConfig, rt: Runtime, step: int) -> dict[str, Any]:
    """ORIG base_train's periodic CORE (extras.core_max_per_task per task) on the uncompiled model."""
    from nanochat_core.evals.core import evaluate_core
    from nanochat_core.stages.base_eval import resolve_tasks

    was_training = model.training
    model.eval()
    task_set = resolve_tasks(cfg.base_eval.bundle, rt)
    result = evaluate_core(
        model, tokenizer, task_set.tasks, device=rt.device, max_per_task=cfg.extras.core_max_per_task,
        batch_size=cfg.base_eval.batch_size, rank=rt.rank, world_size=rt.world_size, autocast_ctx=rt.autocast,
    )
    model.train(was_training)
    return {"step": step, "core": result["core"], "label": result["label"], "examples": result["examples"]}


def pretrain_samples(model: torch.nn.Module, tokenizer, rt: Runtime, step: int) -> dict[str, Any]:
    """ORIG base_train's 7 greedy samples (rank 0 only, as ORIG)."""
    from nanochat_core.stages.base_eval import greedy_samples

    if not rt.is_main:
        return {"step": step, "samples": []}
    was_training = model.training
    model.eval()
    samples = greedy_samples(model, tokenizer, device=rt.device, autocast_ctx=rt.autocast())
    model.train(was_training)
    return {"step": step, "samples": samples}


def base_loss(model: torch.nn.Module, tokenizer, cfg: WorkloadConfig, rt: Runtime) -> dict[str, Any]:
    """ORIG's base_loss: bpb on the first `base_eval.bpb_tokens` tokens of the train and the val split."""
    from nanochat_core.dataloader import val_windows
    from nanochat_core.evals.bpb import evaluate_bpb
    from nanochat_core.stages.download import data_files

    train_files, val_file = data_files(cfg.data, rt)
    seq_len = model.config.seq_len
    rows = max(1, cfg.base_eval.bpb_tokens // seq_len)
    token_bytes = tokenizer.token_bytes()
    out: dict[str, Any] = {"tokens_per_split": rows * seq_len}
    for split, files in (("train", list(train_files)), ("val", [val_file])):
        windows = val_windows(files, tokenizer, seq_len=seq_len, num_rows=rows)
        out[f"{split}_bpb"] = evaluate_bpb(
            model, windows, token_bytes, batch_size=cfg.base_eval.batch_size, rank=rt.rank, world_size=rt.world_size,
            device=rt.device, autocast=rt.autocast, all_reduce=rt.all_reduce_sum,
        )
    return out
