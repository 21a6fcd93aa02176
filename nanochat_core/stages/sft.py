"""Stage `sft`: supervised fine-tuning on the SFT mixture (spec 8.2, ORIG).

Starts from the mid checkpoint (the base one, with a logged note, when midtraining is disabled).
No torch.compile (variable lengths). Each rank takes `device_batch_size` conversations per
micro-step, one per row, padded with `<|assistant_end|>`; targets are -1 where the render mask is 0
and on padding. Gradient accumulation = target_examples_per_step / (device_batch_size * W). LRs are
the pretraining ones x init_lr_frac (0.02), multiplied by 1 - step/N (N = num_iterations, derived
from the mixture); constant Muon momentum; no gradient clipping. As ORIG, the loop visits steps
0..N-1 and the last visit only evaluates and saves, so N-1 optimizer steps are taken. Val loss at
step 0, every `eval_every` steps and at the end (the mean of `eval_steps` per-batch mean losses per
rank, averaged across ranks, as ORIG), MMLU and ARC-Easy categorical accuracy every
`eval_metrics_every` steps (-1 disables); checkpoints to `checkpoints/sft`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from nanochat_core import checkpoint as ckpt
from nanochat_core.common import Runtime
from nanochat_core.config import SFTConfig, WorkloadConfig
from nanochat_core.conversation_loader import ConversationBatches
from nanochat_core.device import accum_dtype
from nanochat_core.evals.chat import evaluate_categorical
from nanochat_core.finetune import build_optimizer, find_source, load_start_model, restore_stage, save_stage
from nanochat_core.model import GPT
from nanochat_core.observer import EVAL, LOG, PROGRESS, STEP
from nanochat_core.stages.pretrain import params_sha256
from nanochat_core.tasks import eval_task, task_source
from nanochat_core.tasks.mixtures import sft_train_mixture, sft_val_mixture
from nanochat_core.tokenizer import Tokenizer

STAGE = "sft"
METRIC_TASKS = ("MMLU", "ARC-Easy")


def grad_accum_steps(sc: SFTConfig, world_size: int) -> int:
    per_pass = sc.device_batch_size * world_size
    if sc.target_examples_per_step % per_pass:
        raise ValueError(
            f"sft.target_examples_per_step ({sc.target_examples_per_step}) must divide by "
            f"device_batch_size*world_size ({sc.device_batch_size}*{world_size})"
        )
    return sc.target_examples_per_step // per_pass


def num_steps(sc: SFTConfig, num_examples: int) -> int:
    """Explicit num_iterations, else (examples // target_examples_per_step) x num_epochs."""
    if sc.num_iterations > 0:
        return sc.num_iterations
    return max(1, (num_examples // sc.target_examples_per_step) * sc.num_epochs)


def masked_mean_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss over the valid targets, number of valid targets); 0 loss when nothing is valid."""
    per_token = model(x, y, loss_reduction="none")
    valid = (y >= 0).sum()
    return per_token.sum() / valid.clamp(min=1), valid


@torch.no_grad()
def validation_loss(model: GPT, batches: ConversationBatches, steps: int, rt: Runtime) -> float:
    """The mean, over `steps` batches on every rank, of each batch's mean loss per valid target (ORIG).

    A batch without any valid target (all cut off by the sequence limit) is left out, where ORIG's
    mean would be NaN; NaN when no batch has one.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=accum_dtype(rt.device), device=rt.device)  # (sum of batch means, batches)
    for _ in range(steps):
        x, y = batches.next()
        valid = int((y >= 0).sum())
        if valid == 0:
            continue
        with rt.autocast():
            loss = model(x, y)  # the batch's mean over its valid targets
        sums[0] += loss.to(sums.dtype)
        sums[1] += 1
    model.train(was_training)
    rt.all_reduce_sum(sums)
    return float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")


def run(cfg: WorkloadConfig, rt: Runtime, *, device_batch_size: int | str | None = None) -> dict[str, Any]:
    """`device_batch_size` (a run-time option from the harness's preflight) replaces the preset's when the
    preset's does not divide target_examples_per_step over the world size."""
    sc = cfg.sft
    if device_batch_size:
        sc = dataclasses.replace(sc, device_batch_size=int(device_batch_size))
    if not sc.enabled:
        rt.observer.event(LOG, "sft: disabled in this preset")
        return {"skipped": True}
    t_start = time.perf_counter()
    tok = Tokenizer.load(rt.artifacts_dir / "tokenizer")
    if cfg.mid_train.enabled:
        source = "mid"
        if ckpt.latest_step(ckpt.checkpoint_dir(rt.artifacts_dir, "mid")) is None:
            raise FileNotFoundError("sft: midtraining is enabled but there is no mid checkpoint; run mid_train first")
    else:
        source = find_source(rt, ("base",), stage=STAGE)
        rt.observer.event(LOG, "sft: midtraining is disabled; starting from the base checkpoint")
    model, src_meta = load_start_model(rt, source)
    T = model.config.seq_len
    data_source = task_source(cfg.data.source)
    train_set = sft_train_mixture(data_source, rt.cache_dir, limit=sc.mixture_limit)
    val_set = sft_val_mixture(data_source, rt.cache_dir, limit=sc.mixture_limit)
    grad_accum = grad_accum_steps(sc, rt.world_size)
    iterations = num_steps(sc, len(train_set))  # ORIG's num_iterations: the LR horizon
    steps = max(0, iterations - 1)  # optimizer steps: ORIG's last iteration only evaluates and saves
    B = sc.device_batch_size
    loader = ConversationBatches(train_set, tok, batch_size=B, rank=rt.rank, world_size=rt.world_size, max_tokens=T, device=rt.device)
    metric_tasks = {}
    if sc.eval_metrics_every != -1:
        metric_tasks = {name: eval_task(name, source=data_source, cache_dir=rt.cache_dir) for name in METRIC_TASKS}

    optimizer = build_optimizer(cfg, model, rt, init_lr_frac=sc.init_lr_frac, momentum=cfg.pretrain.muon_momentum_end)
    out_dir = ckpt.checkpoint_dir(rt.artifacts_dir, "sft")
    step, train_time, tokens_trained = 0, 0.0, 0
    val_loss, metrics = float("nan"), {}
    if (restored := restore_stage(out_dir, model, optimizer, rt)) is not None:
        step, state = restored
        loader.restore(state["loader"])
        train_time, tokens_trained = state["train_time"], state["tokens_trained"]
    start_step = step
    rt.observer.event(
        LOG,
        f"sft: from {source} step {src_meta['step']}, {len(train_set):,} conversations, {steps} steps x "
        f"{sc.target_examples_per_step} examples, device batch {B}, grad accum {grad_accum}, world {rt.world_size}",
    )

    def save(at: int) -> None:
        save_stage(
            out_dir, at, model, optimizer, rt,
            meta={"stage": STAGE, "source": source, "source_step": src_meta["step"], "seed": cfg.seed,
                  "total_steps": steps, "sft_config": cfg.to_dict()["sft"]},
            train_state={"loader": loader.state(), "train_time": train_time, "tokens_trained": tokens_trained},
        )

    last_loss = float("nan")
    while True:
        last_step = step == steps
        if last_step or (sc.eval_every > 0 and step % sc.eval_every == 0 and (step > start_step or step == 0)):
            val_batches = ConversationBatches(val_set, tok, batch_size=B, rank=rt.rank, world_size=rt.world_size, max_tokens=T, device=rt.device)
            val_loss = validation_loss(model, val_batches, max(1, sc.eval_steps), rt)
            rt.observer.event(EVAL, "val_loss", value=val_loss, step=step)
        if metric_tasks and (last_step or (sc.eval_metrics_every > 0 and step % sc.eval_metrics_every == 0 and step > start_step)):
            model.eval()
            for name, task in metric_tasks.items():
                result = evaluate_categorical(model, tok, task, rt, name=name, batch_size=2 * B, max_problems=sc.eval_metrics_max_problems)
                metrics[name] = result.accuracy
                rt.observer.event(EVAL, f"sft/{name}", value=result.accuracy, step=step)
            model.train()
        if last_step or rt.checkpoint.due(step, start_step, sc.checkpoint_every, rt):
            save(step)
        if last_step:
            break
        # ---- one optimizer step (the timed region) ----
        lr_mult = 1.0 - step / iterations
        rt.synchronize()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=rt.device)
        valid_sum = torch.zeros((), dtype=torch.long, device=rt.device)
        for _ in range(grad_accum):
            x, y = loader.next()
            with rt.autocast():
                loss, valid = masked_mean_loss(model, x, y)
            loss_sum += loss.detach()
            valid_sum += valid
            (loss / grad_accum).backward()
        optimizer.set_lr_multiplier(lr_mult)
        grad_norm = optimizer.step()
        optimizer.zero_grad()
        rt.synchronize()
        dt = time.perf_counter() - t0
        # ---- bookkeeping ----
        stats = torch.tensor([float(loss_sum.item()) / grad_accum, float(valid_sum.item())], dtype=accum_dtype(rt.device), device=rt.device)
        rt.all_reduce_sum(stats)
        last_loss = float(stats[0]) / rt.world_size
        step_tokens = int(stats[1])
        tokens_trained += step_tokens
        train_time += dt
        rt.observer.event(
            STEP, step, loss=last_loss, dt=dt, tok_per_s=step_tokens / dt, lr_mult=lr_mult,
            grad_norm=float(grad_norm), total_steps=steps, epoch=loader.epoch,
        )
        rt.observer.event(PROGRESS, step + 1, total=steps, what="sft steps")
        step += 1
    return {
        "steps": steps,
        "num_iterations": iterations,
        "start_step": start_step,
        "source": source,
        "final_loss": last_loss,
        "val_loss": val_loss,
        "metrics": metrics,
        "train_examples": len(train_set),
        "target_tokens": tokens_trained,
        "tok_per_s": tokens_trained / train_time if train_time > 0 else None,
        "total_training_time": train_time,
        "seconds": time.perf_counter() - t_start,
        "device_batch_size": B,
        "grad_accum": grad_accum,
        "world_size": rt.world_size,
        "params_sha256": params_sha256(model),
        "checkpoint_sha256": ckpt.model_sha256(out_dir, steps) if rt.is_main else None,
    }
