"""Stage `pretrain`: base-model training (spec sections 5-6, ORIG).

Step timing follows the spec: synchronize, t0, all micro-steps and the optimizer step, synchronize,
t1. The steady-state training time is the sum of dt over steps whose index exceeds
`timing_skip_steps` (10): compile and warm-up excluded, as on nanochat's leaderboard.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch

from nanochat_core import checkpoint as ckpt
from nanochat_core.batch_size import auto_device_batch, cpu_bytes_per_row, pick_device_batch_size
from nanochat_core.common import Runtime
from nanochat_core.config import PretrainConfig, WorkloadConfig
from nanochat_core.dataloader import TokenLoader, batch_fingerprint, val_windows
from nanochat_core.evals.bpb import evaluate_bpb
from nanochat_core.flops import device_name, peak_flops
from nanochat_core.model import GPT, GPTConfig, build_model
from nanochat_core.observer import EVAL, LOG, STEP
from nanochat_core.optim import MuonAdamW
from nanochat_core.schedules import lr_multiplier, muon_momentum
from nanochat_core.side_work import SideWork, pretrain_core, pretrain_samples
from nanochat_core.stages.download import data_files
from nanochat_core.stages.tokenizer import tokenizer_dir
from nanochat_core.tokenizer import Tokenizer


def num_steps(pc: PretrainConfig, num_params: int) -> int:
    """Explicit step count, else the data:param ratio: tokens = ratio·params, steps = tokens // batch."""
    if pc.num_iterations > 0:
        return pc.num_iterations
    if pc.target_param_data_ratio <= 0:
        raise ValueError("pretrain: set num_iterations > 0 or target_param_data_ratio > 0")
    return max(1, int(pc.target_param_data_ratio * num_params) // pc.total_batch_tokens)


def rows_per_step(pc: PretrainConfig) -> int:
    if pc.total_batch_tokens % pc.seq_len:
        raise ValueError(f"pretrain.total_batch_tokens ({pc.total_batch_tokens}) must be a multiple of seq_len ({pc.seq_len})")
    return pc.total_batch_tokens // pc.seq_len


def choose_device_batch(
    pc: PretrainConfig, model: GPT, rt: Runtime, rows_per_rank: int, train_model: torch.nn.Module | None = None
) -> tuple[int, dict]:
    """The device batch and a record of why. On CUDA/ROCm/XPU the model that trains (``train_model``:
    compiled when compiling; the optimizer's state already allocated) is probed, starting from
    nanochat's batch for the depth, and the minimum over ranks is taken; on the CPU (and MPS) the
    activation memory is estimated against available RAM."""
    if pc.device_batch_size > 0:
        return pc.device_batch_size, {"source": "config", "device_batch_size": pc.device_batch_size,
                                      "why": "pretrain.device_batch_size is set in the preset"}
    if rt.device.type in ("cuda", "xpu"):
        return auto_device_batch(
            rows_per_rank=rows_per_rank, depth=pc.depth, seq_len=pc.seq_len, train_model=train_model or model,
            model=model, device=rt.device, autocast=rt.autocast, compiled=train_model is not None and train_model is not model,
        )
    per_row = cpu_bytes_per_row(model, pc.seq_len, model.config.vocab_size)
    b = pick_device_batch_size(
        rows_per_rank=rows_per_rank,
        device=rt.device,
        bytes_per_row=per_row,
        fixed_bytes=16 * model.num_params(),  # weights, grads, optimizer moments
    )
    return b, {"source": "auto", "device_batch_size": b, "bytes_per_row_estimate": per_row,
               "why": f"{rt.device.type}: largest power of two whose estimated activations fit half the available RAM"}


def params_sha256(model: torch.nn.Module) -> str:
    """Hash of every parameter's bytes in name order (a weight fingerprint)."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run(cfg: WorkloadConfig, rt: Runtime, *, probe_steps: int | str = 0, stop_after_probe: bool | str = False) -> dict:
    """Train the base model. `probe_steps` > 0 records the losses, batch fingerprints and a weight hash
    of the first `probe_steps` steps (for the harness's determinism probe); with `stop_after_probe`
    the stage ends there (no eval, no checkpoint): that is the probe itself, run in a fresh process."""
    probe_steps, stop_after_probe = int(probe_steps), stop_after_probe in (True, "1", "true", "True")
    pc = cfg.pretrain
    tok = Tokenizer.load(tokenizer_dir(rt))
    token_bytes = tok.token_bytes()
    train_files, val_file = data_files(cfg.data, rt)
    config = GPTConfig.from_depth(pc.depth, vocab_size=tok.vocab_size, seq_len=pc.seq_len)
    model = build_model(config, rt.device, seed=cfg.seed)
    n_params, flops_tok = model.num_params(), model.flops_per_token()
    steps = num_steps(pc, n_params)
    R = rows_per_step(pc)
    if R % rt.world_size:
        raise ValueError(f"rows per step ({R}) must divide by the number of processes ({rt.world_size})")
    # the optimizer (its state allocated at construction) and the compiled model exist before the device
    # batch is probed, so the probe measures what training will hold
    optimizer = MuonAdamW(
        model.param_groups(), model_dim=config.n_embd, matrix_lr=pc.matrix_lr, embedding_lr=pc.embedding_lr,
        unembedding_lr=pc.unembedding_lr, betas=pc.adam_betas, weight_decay=pc.weight_decay,
        momentum=pc.muon_momentum_start, grad_clip=pc.grad_clip, rank=rt.rank, world_size=rt.world_size,
    )
    train_model = torch.compile(model, dynamic=False) if rt.compile else model
    side = SideWork(cfg, rt)  # ORIG's side work (extras.orig_side_work), timed
    B, batch_choice = choose_device_batch(pc, model, rt, R // rt.world_size, train_model)
    loader = TokenLoader(
        train_files, tok, seq_len=pc.seq_len, rows_per_step=R, device_batch_size=B,
        rank=rt.rank, world_size=rt.world_size, device=rt.device,
    )
    out_dir = ckpt.checkpoint_dir(rt.artifacts_dir, "base")
    start_step, train_time, history = 0, 0.0, {"min_val_bpb": float("inf"), "fingerprints": _ChainFrom("")}
    # CUDA kernels are not bitwise reproducible (flash-attention backward, atomics): the harness then judges
    # the probe's later losses against a drift tolerance instead of demanding identical weights
    probe: dict = {"steps": probe_steps, "losses": [], "fingerprints": [], "params_sha256": None,
                   "nondeterministic_kernels": rt.device.type == "cuda"}
    if rt.resume and (last := ckpt.latest_step(out_dir)) is not None:
        start_step, train_time = _restore(out_dir, last, model, optimizer, loader, rt, history)
        rt.observer.event(LOG, f"pretrain: resumed from step {last}")
    # The probe record covers steps [0, probe_steps); a resume keeps the one saved with its checkpoint.
    saved_probe = history.get("probe")
    probe_complete = start_step == 0
    if start_step and saved_probe and saved_probe.get("steps") == probe_steps and len(saved_probe["losses"]) == min(start_step, probe_steps):
        probe, probe_complete = saved_probe, True
    eval_rows = max(1, pc.eval_tokens // pc.seq_len)
    val = val_windows([val_file], tok, seq_len=pc.seq_len, num_rows=eval_rows)
    peak = peak_flops(device_name(rt.device), (rt.device_info or {}).get("precision", "bf16"))  # fp32 peak below sm_80
    rt.observer.event(
        LOG,
        f"pretrain: d{pc.depth} {n_params:,} params, {steps} steps x {pc.total_batch_tokens:,} tokens, "
        f"device batch {B}, grad accum {loader.grad_accum}, world {rt.world_size}",
    )
    # a run resumed at its final checkpoint takes no step: its final loss is the one saved there
    val_bpb, last_loss, loss_ema, dt = float("nan"), history.get("last_loss", float("nan")), 0.0, 0.0
    step = start_step
    while True:
        if probe_steps and step == probe_steps and probe["params_sha256"] is None:
            probe["params_sha256"] = params_sha256(model) if rt.is_main else None  # replicated weights: one rank hashes
            if stop_after_probe:
                loader.close()
                return {"probe": probe, "steps": steps, "device_batch_size": B, "grad_accum": loader.grad_accum}
        last_step = step == steps
        # val bpb at step 0 too (as ORIG), with the model that trains (compiled when compiling, as ORIG)
        if last_step or (pc.eval_every > 0 and step % pc.eval_every == 0 and (step > start_step or step == 0)):
            with side.timed("val_bpb"):
                val_bpb = evaluate_bpb(
                    train_model, val, token_bytes, batch_size=B, rank=rt.rank, world_size=rt.world_size,
                    device=rt.device, autocast=rt.autocast, all_reduce=rt.all_reduce_sum,
                )
            history["min_val_bpb"] = min(history["min_val_bpb"], val_bpb)
            rt.observer.event(EVAL, "val_bpb", value=val_bpb, step=step)
        if side.core_due(step, last_step):  # ORIG's CORE + samples every 2,000 steps and at the end
            with side.timed("core"):
                core = pretrain_core(model, tok, cfg, rt, step)
            with side.timed("samples"):
                sampled = pretrain_samples(model, tok, rt, step)
            side.details.setdefault("core", []).append(core)
            side.details["samples"] = sampled
            rt.observer.event(EVAL, "core", value=core["core"], label=core["label"], step=step)
        if last_step or rt.checkpoint.due(step, start_step, pc.checkpoint_every, rt):
            _save(out_dir, step, model, optimizer, loader, rt, train_time, history, cfg, steps, probe if probe_steps else None)
        if last_step:
            break
        # ---- one optimizer step (the timed region) ----
        lr_mult = lr_multiplier(step, steps, warmup_ratio=pc.warmup_ratio, warmdown_ratio=pc.warmdown_ratio, final_lr_frac=pc.final_lr_frac)
        momentum = muon_momentum(step, start=pc.muon_momentum_start, end=pc.muon_momentum_end, ramp_steps=pc.muon_momentum_ramp_steps)
        rt.synchronize()
        t0 = time.perf_counter()
        row_hashes: dict[int, int] = {}
        loss_sum = torch.zeros((), device=rt.device)
        for _ in range(loader.grad_accum):
            x, y, hashes = loader.next()
            row_hashes.update(hashes)
            with rt.autocast():
                loss = train_model(x, y)
            loss_sum += loss.detach()
            (loss / loader.grad_accum).backward()
            loader.prefetch()  # the next micro-batch (or the next step's first) is built while the device computes
        optimizer.set_lr_multiplier(lr_mult)
        optimizer.set_momentum(momentum)
        grad_norm = optimizer.step()
        optimizer.zero_grad()
        rt.synchronize()
        dt = time.perf_counter() - t0
        # ---- bookkeeping, outside the timed region ----
        mean_loss = rt.all_reduce_sum(loss_sum / loader.grad_accum) / rt.world_size
        last_loss = history["last_loss"] = float(mean_loss.item())
        fingerprint = _global_fingerprint(row_hashes, R, rt)
        history["fingerprints"].update(fingerprint.encode())
        if step > pc.timing_skip_steps:
            train_time += dt
        loss_ema = 0.9 * loss_ema + 0.1 * last_loss
        tok_per_s = pc.total_batch_tokens / dt
        mfu = 100 * flops_tok * tok_per_s / (peak * rt.world_size) if peak else None
        rt.observer.event(
            STEP, step, loss=last_loss, loss_ema=loss_ema / (1 - 0.9 ** (step - start_step + 1)), dt=dt,
            tok_per_s=tok_per_s, mfu=mfu, lr_mult=lr_mult, momentum=momentum,
            grad_norm=float(grad_norm), fingerprint=fingerprint, total_steps=steps,
        )
        if step < probe_steps:
            probe["losses"].append(last_loss)
            probe["fingerprints"].append(fingerprint)
        step += 1
    timed_steps = max(0, steps - (pc.timing_skip_steps + 1))  # train_time (restored on resume) covers them all
    steady_tok_s = pc.total_batch_tokens * timed_steps / train_time if train_time > 0 else None
    peak_mem = torch.cuda.max_memory_allocated(rt.device) if rt.device.type == "cuda" else None
    loader.close()  # queued row-group prefetches would otherwise delay the process exit
    return {
        "val_bpb": val_bpb,
        "min_val_bpb": history["min_val_bpb"],
        "final_loss": last_loss,
        "steps": steps,
        "start_step": start_step,
        "tokens": steps * pc.total_batch_tokens,
        "num_params": n_params,
        "flops_per_token": flops_tok,
        "total_flops": flops_tok * steps * pc.total_batch_tokens,
        "device_batch_size": B,
        "device_batch_choice": batch_choice,
        "grad_accum": loader.grad_accum,
        "world_size": rt.world_size,
        "total_training_time": train_time,
        "steady_tok_per_s": steady_tok_s,
        "mfu": (100 * flops_tok * steady_tok_s / (peak * rt.world_size)) if (peak and steady_tok_s) else None,
        "peak_memory_bytes": peak_mem,
        "fingerprint_chain": history["fingerprints"].hexdigest(),
        "params_sha256": params_sha256(model) if rt.is_main else None,  # only rank 0's result is written
        "checkpoint_sha256": ckpt.model_sha256(out_dir, steps) if rt.is_main else None,
        "tokenizer_sha256": tok.sha256(),
        "probe": probe if probe_steps and probe_complete else None,
        "side_work": side.record(),
    }


def _global_fingerprint(row_hashes: dict[int, int], rows: int, rt: Runtime) -> str:
    """Combine every rank's row hashes into the global batch fingerprint (one small all-reduce)."""
    vec = torch.zeros(rows, dtype=torch.int64)
    for j, h in row_hashes.items():
        vec[j] = h
    if rt.is_distributed:
        dev_vec = vec.to(rt.device)
        rt.all_reduce_sum(dev_vec)
        vec = dev_vec.cpu()
    return batch_fingerprint(vec.tolist())


def _save(out_dir: Path, step: int, model, optimizer, loader, rt: Runtime, train_time: float, history: dict, cfg, steps: int,
          probe: dict | None = None) -> None:
    train_state = {
        "probe": probe,  # the determinism-probe record so far, so a resumed run still reports it
        "loader": loader.state(),
        "train_time": train_time,
        "min_val_bpb": history["min_val_bpb"],
        "last_loss": history.get("last_loss", float("nan")),
        "fingerprint_chain_state": history["fingerprints"].hexdigest(),
        "torch_rng": torch.get_rng_state(),
    }
    ckpt.save_checkpoint(
        out_dir, step, model=model, rank=rt.rank, optimizer_state=optimizer.state_dict(), train_state=train_state,
        meta={"stage": "pretrain", "total_steps": steps, "seed": cfg.seed, "pretrain_config": cfg.to_dict()["pretrain"],
              "world_size": rt.world_size},
        barrier=rt.barrier, local_rank=rt.local_rank,
    )


def _restore(out_dir: Path, step: int, model, optimizer, loader, rt: Runtime, history: dict) -> tuple[int, float]:
    state = torch.load(out_dir / f"model_{step:06d}.pt", map_location=rt.device, weights_only=True)
    model.load_state_dict(state)
    opt_state, train_state = ckpt.load_rank_state(out_dir, step, rt.rank)
    if opt_state is None or train_state is None:
        raise FileNotFoundError(f"checkpoint step {step} in {out_dir} lacks rank {rt.rank}'s optimizer or loader state")
    optimizer.load_state_dict(opt_state)
    loader.restore(train_state["loader"])
    torch.set_rng_state(train_state["torch_rng"])
    history["min_val_bpb"] = train_state["min_val_bpb"]
    # The chain continues from the saved digest so a resumed run's chain equals an uninterrupted one's.
    history["fingerprints"] = _ChainFrom(train_state["fingerprint_chain_state"])
    history["probe"] = train_state.get("probe")
    history["last_loss"] = train_state.get("last_loss", float("nan"))
    return step, train_state["train_time"]


class _ChainFrom:
    """A running digest that can be restored: each update hashes (previous digest || data)."""

    def __init__(self, start: str) -> None:
        self.value = start

    def update(self, data: bytes) -> None:
        self.value = hashlib.sha256(self.value.encode() + data).hexdigest()

    def hexdigest(self) -> str:
        return self.value
