"""Stage `rl` (optional, `cfg.rl.enabled`): on-policy REINFORCE on GSM8K train (spec 9, ORIG).

Per step each rank takes `examples_per_step / W` questions (rank r cycles over r, r+W, ...), samples
`num_samples` completions per question with the Engine in passes of `device_batch_size`
(seed per pass = hash((step, example, pass)) masked to 31 bits), and scores each with the task's
reward (1.0 when the number after "####" equals the reference). Advantage = reward - mean reward of
the question's group (no std division, no KL, no ratio clipping). Sequences are padded with
`<|assistant_end|>`; targets are -1 on prompt tokens, padding and tool-forced tokens. Per pass,
objective = sum(logp * advantage) / (valid tokens * passes * examples per rank) and loss = -objective,
accumulated over the rank's examples. LRs x init_lr_frac, linear decay to 0. pass@k (k = 1..
device_batch_size) on the first `eval_examples` GSM8K test problems; checkpoints to `checkpoints/rl`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from nanochat_core import checkpoint as ckpt
from nanochat_core.chat_format import render_for_completion
from nanochat_core.common import Runtime
from nanochat_core.config import RLConfig, WorkloadConfig
from nanochat_core.conversation_loader import collate_conversations
from nanochat_core.device import accum_dtype
from nanochat_core.engine import Engine
from nanochat_core.finetune import build_optimizer, find_source, load_start_model, restore_stage, save_stage
from nanochat_core.observer import EVAL, LOG, PROGRESS, STEP
from nanochat_core.stages.pretrain import params_sha256
from nanochat_core.tasks import task_source
from nanochat_core.tasks.base import Task
from nanochat_core.tasks.gsm8k import GSM8K
from nanochat_core.tokenizer import Tokenizer

STAGE = "rl"
SOURCES = ("sft", "mid", "base")  # ORIG starts from sft; fall back (logged) when it is absent


def rollout_seed(step: int, example_index: int, pass_index: int) -> int:
    """Sampling seed of one pass: hash of the triple, masked to 31 bits (stable: ints hash to themselves)."""
    return hash((step, example_index, pass_index)) & 0x7FFFFFFF


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Reward minus the mean reward of the group (all samples of one question)."""
    return rewards - rewards.mean()


def policy_gradient_loss(logp: torch.Tensor, targets: torch.Tensor, advantages: torch.Tensor, normalizer: float) -> torch.Tensor:
    """-sum(logp * advantage over valid targets) / (valid targets * normalizer), token-level normalization.

    `logp` (B, T) log-probabilities of the targets, `targets` (B, T) with -1 where ignored,
    `advantages` (B,), `normalizer` = passes x examples per rank.
    """
    valid = targets >= 0
    objective = (logp * advantages.unsqueeze(-1) * valid).sum()
    return -objective / (valid.sum().clamp(min=1) * normalizer)


def pass_at_k(outcomes: Sequence[Sequence[bool]], k: int) -> int:
    """Problems where at least one of the first k samples is correct."""
    return sum(1 for samples in outcomes if any(samples[:k]))


def num_steps(rc: RLConfig, num_examples: int) -> int:
    if rc.num_iterations > 0:
        return rc.num_iterations
    return max(1, (num_examples // rc.examples_per_step) * rc.num_epochs)


@dataclass
class Group:
    """The samples of one question: full sequences, engine masks (prompt 0), rewards, completion lengths."""

    sequences: list[list[int]]
    masks: list[list[int]]
    rewards: list[float]
    completion_tokens: int


def sample_group(engine: Engine, tok: Tokenizer, task: Task, conversation: dict, *, rc: RLConfig, seed_of, num_samples: int) -> Group:
    """`num_samples` completions of one question in passes of `rc.device_batch_size`, scored by the task."""
    prompt = render_for_completion(tok, conversation)
    sequences, masks, rewards, completion_tokens = [], [], [], 0
    for p in range(num_samples // rc.device_batch_size):
        seqs, ms = engine.generate_batch(
            prompt, num_samples=rc.device_batch_size, max_tokens=rc.max_new_tokens,
            temperature=rc.temperature, top_k=rc.top_k, seed=seed_of(p),
        )
        for seq, mask in zip(seqs, ms):
            text = tok.decode(seq[len(prompt):])
            rewards.append(task.reward(conversation, text))
            completion_tokens += len(seq) - len(prompt)
        sequences += seqs
        masks += ms
    return Group(sequences, masks, rewards, completion_tokens)


def evaluate_pass_at_k(engine: Engine, tok: Tokenizer, task: Task, rt: Runtime, rc: RLConfig) -> dict[str, float]:
    """pass@k for k = 1..device_batch_size over the first `eval_examples` problems, summed across ranks."""
    n = min(rc.eval_examples, task.num_examples())
    k_max = rc.device_batch_size
    outcomes = []
    for index in range(rt.rank, n, rt.world_size):
        conversation = task.get_example(index)
        group = sample_group(engine, tok, task, conversation, rc=rc, seed_of=lambda p, i=index: rollout_seed(-1, i, p), num_samples=k_max)
        outcomes.append([r > 0 for r in group.rewards])
    counts = torch.tensor([len(outcomes)] + [pass_at_k(outcomes, k) for k in range(1, k_max + 1)], dtype=torch.long, device=rt.device)
    rt.all_reduce_sum(counts)
    total = int(counts[0])
    return {f"pass@{k}": (int(counts[k]) / total if total else 0.0) for k in range(1, k_max + 1)}


def run(cfg: WorkloadConfig, rt: Runtime) -> dict[str, Any]:
    rc = cfg.rl
    if not rc.enabled:
        rt.observer.event(LOG, "rl: disabled in this preset")
        return {"skipped": True}
    if rc.num_samples % rc.device_batch_size:
        raise ValueError(f"rl.num_samples ({rc.num_samples}) must divide by rl.device_batch_size ({rc.device_batch_size})")
    if rc.examples_per_step % rt.world_size:
        raise ValueError(f"rl.examples_per_step ({rc.examples_per_step}) must divide by the number of processes ({rt.world_size})")
    t_start = time.perf_counter()
    tok = Tokenizer.load(rt.artifacts_dir / "tokenizer")
    source = find_source(rt, SOURCES, stage=STAGE)
    model, src_meta = load_start_model(rt, source)
    engine = Engine(model, tok)
    data_source = task_source(cfg.data.source)
    train_task = GSM8K("main", "train", source=data_source, cache_dir=rt.cache_dir)
    test_task = GSM8K("main", "test", source=data_source, cache_dir=rt.cache_dir)
    steps = num_steps(rc, train_task.num_examples())
    per_rank = rc.examples_per_step // rt.world_size
    passes = rc.num_samples // rc.device_batch_size
    my_examples = range(rt.rank, train_task.num_examples(), rt.world_size)
    pad_id = tok.encode_special("<|assistant_end|>")

    optimizer = build_optimizer(cfg, model, rt, init_lr_frac=rc.init_lr_frac, momentum=cfg.pretrain.muon_momentum_end)
    out_dir = ckpt.checkpoint_dir(rt.artifacts_dir, "rl")
    step, train_time, sampled_tokens = 0, 0.0, 0
    if (restored := restore_stage(out_dir, model, optimizer, rt)) is not None:
        step, state = restored
        train_time, sampled_tokens = state["train_time"], state["sampled_tokens"]
    start_step = step
    rt.observer.event(
        LOG,
        f"rl: from {source} step {src_meta['step']}, {steps} steps x {rc.examples_per_step} questions x "
        f"{rc.num_samples} samples, {passes} passes of {rc.device_batch_size}, world {rt.world_size}",
    )

    def save(at: int) -> None:
        save_stage(
            out_dir, at, model, optimizer, rt,
            meta={"stage": STAGE, "source": source, "source_step": src_meta["step"], "seed": cfg.seed,
                  "total_steps": steps, "rl_config": cfg.to_dict()["rl"]},
            train_state={"train_time": train_time, "sampled_tokens": sampled_tokens},
        )

    pass_k: dict[str, float] = {}
    last_loss, mean_reward = float("nan"), float("nan")
    while True:
        last_step = step == steps
        periodic = rc.eval_every > 0 and step % rc.eval_every == 0 and (step > start_step or step == 0)
        if rc.eval_examples > 0 and (last_step or periodic):
            model.eval()
            pass_k = evaluate_pass_at_k(engine, tok, test_task, rt, rc)
            model.train()
            for name, value in pass_k.items():
                rt.observer.event(EVAL, f"rl/{name}", value=value, step=step)
        if last_step or rt.checkpoint.due(step, start_step, rc.checkpoint_every, rt):
            save(step)
        if last_step:
            break
        # ---- one step: rollouts + policy gradient (the timed region) ----
        lr_mult = 1.0 - step / steps
        rt.synchronize()
        t0 = time.perf_counter()
        reward_sum = loss_sum = 0.0
        step_tokens = 0
        for e in range(per_rank):
            position = step * per_rank + e
            index = my_examples[position % len(my_examples)]
            conversation = train_task.get_example(index)
            model.eval()
            group = sample_group(
                engine, tok, train_task, conversation, rc=rc, num_samples=rc.num_samples,
                seed_of=lambda p, s=step, i=index: rollout_seed(s, i, p),
            )
            model.train()
            rewards = torch.tensor(group.rewards, dtype=torch.float32, device=rt.device)
            advantages = group_advantages(rewards)
            reward_sum += float(rewards.mean())
            step_tokens += group.completion_tokens
            for p in range(passes):
                rows = slice(p * rc.device_batch_size, (p + 1) * rc.device_batch_size)
                x, y = collate_conversations(list(zip(group.sequences[rows], group.masks[rows])), pad_id, rt.device)
                with rt.autocast():
                    logp = -model(x, y, loss_reduction="none")
                loss = policy_gradient_loss(logp, y, advantages[rows], passes * per_rank)
                loss.backward()
                loss_sum += float(loss.detach())
        optimizer.set_lr_multiplier(lr_mult)
        grad_norm = optimizer.step()
        optimizer.zero_grad()
        rt.synchronize()
        dt = time.perf_counter() - t0
        # ---- bookkeeping ----
        stats = torch.tensor([reward_sum / per_rank, loss_sum, float(step_tokens)], dtype=accum_dtype(rt.device), device=rt.device)
        rt.all_reduce_sum(stats)
        mean_reward, last_loss = float(stats[0]) / rt.world_size, float(stats[1]) / rt.world_size
        sampled_tokens += int(stats[2])
        train_time += dt
        rt.observer.event(
            STEP, step, loss=last_loss, mean_reward=mean_reward, dt=dt, tok_per_s=float(stats[2]) / dt,
            lr_mult=lr_mult, grad_norm=float(grad_norm), total_steps=steps,
        )
        rt.observer.event(PROGRESS, step + 1, total=steps, what="rl steps")
        step += 1
    return {
        "steps": steps,
        "start_step": start_step,
        "source": source,
        "final_loss": last_loss,
        "mean_reward": mean_reward,
        "pass_at_k": pass_k,
        "sampled_tokens": sampled_tokens,
        "tok_per_s": sampled_tokens / train_time if train_time > 0 else None,
        "total_training_time": train_time,
        "seconds": time.perf_counter() - t_start,
        "world_size": rt.world_size,
        "params_sha256": params_sha256(model),
        "checkpoint_sha256": ckpt.model_sha256(out_dir, steps) if rt.is_main else None,
    }
