"""Stage `mid_train`: midtraining on the conversation mixture (spec 8.1, ORIG).

Starts from the base checkpoint with fresh optimizers built like pretraining's (LRs x init_lr_frac).
Conversations are rendered and streamed into a flat token buffer and the loss covers every token;
the global batch is `total_batch_tokens` at the base model's seq_len, with gradient accumulation.
Runs one pass over the mixture (or `num_iterations` steps). LR multiplier by progress p: 1 for
p < 0.8, then linear to 0 at p = 1; Muon momentum ramps as in pretraining; no gradient clipping.
Val bpb on the val mixture at step 0, every `eval_every` steps and at the end; checkpoints to
`checkpoints/mid`. As ORIG, `total_training_time` leaves out the first 10 steps (compile, warm-up).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from nanochat_core import checkpoint as ckpt
from nanochat_core.batch_size import auto_device_batch, cpu_bytes_per_row, pick_device_batch_size
from nanochat_core.chat_format import render_conversation
from nanochat_core.common import Runtime
from nanochat_core.config import WorkloadConfig
from nanochat_core.conversation_loader import ConversationTokenStream
from nanochat_core.device import accum_dtype
from nanochat_core.evals.bpb import evaluate_bpb
from nanochat_core.finetune import build_optimizer, load_start_model, restore_stage, save_stage
from nanochat_core.model import GPT
from nanochat_core.observer import EVAL, LOG, PROGRESS, STEP
from nanochat_core.schedules import muon_momentum
from nanochat_core.stages.pretrain import params_sha256
from nanochat_core.tasks import task_source
from nanochat_core.tasks.mixtures import mid_train_mixture, mid_val_mixture
from nanochat_core.tokenizer import Tokenizer

STAGE = "mid_train"
WARMDOWN_START = 0.8  # progress after which the LR decays linearly to 0
TIMING_SKIP_STEPS = 10  # ORIG's training time counts steps after the first 10


def progress_lr_multiplier(progress: float) -> float:
    """1 for progress < 0.8, then linear to 0 at progress 1 (never negative)."""
    if progress < WARMDOWN_START:
        return 1.0
    return max(0.0, (1.0 - progress) / (1.0 - WARMDOWN_START))


def val_token_windows(dataset, tokenizer, *, seq_len: int, num_rows: int) -> torch.Tensor:
    """The first `num_rows` windows of seq_len+1 tokens of the val mixture rendered in order (N, T+1)."""
    need, tokens, i = num_rows * (seq_len + 1), [], 0
    while len(tokens) < need and i < len(dataset):
        ids, _ = render_conversation(tokenizer, dataset.get_example(i), seq_len)
        tokens.extend(ids)
        i += 1
    rows = min(num_rows, len(tokens) // (seq_len + 1))
    if rows == 0:
        raise ValueError(f"the val mixture renders to fewer than {seq_len + 1} tokens")
    return torch.tensor(tokens[: rows * (seq_len + 1)], dtype=torch.long).view(rows, seq_len + 1)


def choose_device_batch(requested: int, model: GPT, rt: Runtime, rows_per_rank: int, seq_len: int) -> int:
    """The configured device batch, else the largest power of two that fits (as pretraining)."""
    if requested > 0:
        return requested
    if rt.device.type in ("cuda", "xpu"):  # probe from nanochat's batch, minimum over ranks, peak stats reset
        return auto_device_batch(
            rows_per_rank=rows_per_rank, depth=model.config.n_layer, seq_len=seq_len, train_model=model, model=model,
            device=rt.device, autocast=rt.autocast, compiled=False,
        )[0]
    return pick_device_batch_size(
        rows_per_rank=rows_per_rank, device=rt.device,
        bytes_per_row=cpu_bytes_per_row(model, seq_len, model.config.vocab_size), fixed_bytes=16 * model.num_params(),
    )


def run(cfg: WorkloadConfig, rt: Runtime) -> dict[str, Any]:
    mc = cfg.mid_train
    if not mc.enabled:
        rt.observer.event(LOG, "mid_train: disabled in this preset")
        return {"skipped": True}
    t_start = time.perf_counter()
    tok = Tokenizer.load(rt.artifacts_dir / "tokenizer")
    model, base_meta = load_start_model(rt, "base")
    T = model.config.seq_len
    if mc.total_batch_tokens % T:
        raise ValueError(f"mid_train.total_batch_tokens ({mc.total_batch_tokens}) must be a multiple of seq_len ({T})")
    rows = mc.total_batch_tokens // T
    if rows % rt.world_size:
        raise ValueError(f"rows per step ({rows}) must divide by the number of processes ({rt.world_size})")
    B = choose_device_batch(mc.device_batch_size, model, rt, rows // rt.world_size, T)
    if rows % (B * rt.world_size):
        raise ValueError(f"rows per step ({rows}) must divide by device_batch_size*world_size ({B}*{rt.world_size})")
    grad_accum = rows // (B * rt.world_size)

    source = task_source(cfg.data.source)
    train_set = mid_train_mixture(source, rt.cache_dir, limit=mc.mixture_limit)
    val_set = mid_val_mixture(source, rt.cache_dir, limit=mc.mixture_limit)
    loader = ConversationTokenStream(train_set, tok, batch_size=B, seq_len=T, rank=rt.rank, world_size=rt.world_size, device=rt.device)
    val = val_token_windows(val_set, tok, seq_len=T, num_rows=max(1, mc.eval_tokens // T))
    token_bytes = tok.token_bytes()

    pc = cfg.pretrain
    optimizer = build_optimizer(cfg, model, rt, init_lr_frac=mc.init_lr_frac, momentum=pc.muon_momentum_start)
    out_dir = ckpt.checkpoint_dir(rt.artifacts_dir, "mid")
    step, train_time, min_val_bpb, progress, last_step = 0, 0.0, float("inf"), 0.0, False
    if (restored := restore_stage(out_dir, model, optimizer, rt)) is not None:
        step, state = restored
        loader.restore(state["loader"])
        train_time, min_val_bpb = state["train_time"], state["min_val_bpb"]
        progress, last_step = state["progress"], state["last_step"]
    start_step = step
    train_model = torch.compile(model, dynamic=False) if rt.compile else model
    total = mc.num_iterations if mc.num_iterations > 0 else None
    rt.observer.event(
        LOG,
        f"mid_train: {len(train_set):,} conversations, {'one pass' if total is None else f'{total} steps'} x "
        f"{mc.total_batch_tokens:,} tokens, device batch {B}, grad accum {grad_accum}, world {rt.world_size}",
    )

    def save(at: int) -> None:
        save_stage(
            out_dir, at, model, optimizer, rt,
            meta={"stage": STAGE, "source": "base", "source_step": base_meta["step"], "seed": cfg.seed,
                  "mid_train_config": cfg.to_dict()["mid_train"]},
            train_state={"loader": loader.state(), "train_time": train_time, "min_val_bpb": min_val_bpb,
                         "progress": progress, "last_step": last_step},
        )

    val_bpb, last_loss, steps_run = float("nan"), float("nan"), 0
    while True:
        if total is not None:
            last_step = step >= total
        if last_step or (mc.eval_every > 0 and step % mc.eval_every == 0 and (step > start_step or step == 0)):
            val_bpb = evaluate_bpb(  # with the model that trains (compiled when compiling), as ORIG
                train_model, val, token_bytes, batch_size=B, rank=rt.rank, world_size=rt.world_size,
                device=rt.device, autocast=rt.autocast, all_reduce=rt.all_reduce_sum,
            )
            min_val_bpb = min(min_val_bpb, val_bpb)
            rt.observer.event(EVAL, "val_bpb", value=val_bpb, step=step)
        if last_step or rt.checkpoint.due(step, start_step, mc.checkpoint_every, rt):
            save(step)
        if last_step:
            break
        # ---- one optimizer step (the timed region) ----
        lr_mult = progress_lr_multiplier(progress)
        momentum = muon_momentum(step, start=pc.muon_momentum_start, end=pc.muon_momentum_end, ramp_steps=pc.muon_momentum_ramp_steps)
        rt.synchronize()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=rt.device)
        for _ in range(grad_accum):
            x, y = loader.next()
            with rt.autocast():
                loss = train_model(x, y)
            loss_sum += loss.detach()
            (loss / grad_accum).backward()
        optimizer.set_lr_multiplier(lr_mult)
        optimizer.set_momentum(momentum)
        grad_norm = optimizer.step()
        optimizer.zero_grad()
        rt.synchronize()
        dt = time.perf_counter() - t0
        # ---- bookkeeping: global loss, progress, end of the pass ----
        stats = torch.tensor([float(loss_sum.item()) / grad_accum, loader.progress, float(loader.exhausted)], dtype=accum_dtype(rt.device), device=rt.device)
        rt.all_reduce_sum(stats)
        last_loss = float(stats[0]) / rt.world_size
        step += 1
        steps_run += 1
        if step > TIMING_SKIP_STEPS:  # ORIG: the first 10 steps are not timed
            train_time += dt
        if total is not None:
            progress = step / total
        else:
            progress = float(stats[1]) / rt.world_size
            last_step = float(stats[2]) > 0  # any rank finished its pass
        rt.observer.event(
            STEP, step - 1, loss=last_loss, dt=dt, tok_per_s=mc.total_batch_tokens / dt, lr_mult=lr_mult,
            momentum=momentum, grad_norm=float(grad_norm), progress=progress, total_steps=total,
        )
        rt.observer.event(PROGRESS, min(progress, 1.0), total=1.0, what="mid_train mixture")
    tokens = step * mc.total_batch_tokens
    timed_steps = max(0, step - TIMING_SKIP_STEPS)  # train_time, restored on resume, covers them all
    return {
        "steps": step,
        "start_step": start_step,
        "final_loss": last_loss,
        "val_bpb": val_bpb,
        "min_val_bpb": min_val_bpb,
        "tokens": tokens,
        "tok_per_s": timed_steps * mc.total_batch_tokens / train_time if train_time > 0 else None,
        "total_training_time": train_time,
        "timed_steps": timed_steps,
        "seconds": time.perf_counter() - t_start,
        "device_batch_size": B,
        "grad_accum": grad_accum,
        "world_size": rt.world_size,
        "mixture_examples": len(train_set),
        "params_sha256": params_sha256(model),
        "checkpoint_sha256": ckpt.model_sha256(out_dir, step) if rt.is_main else None,
    }
