"""Stage `base_eval`: the CORE metric of the base checkpoint (spec section 7) plus 7 greedy samples.

Reads `artifacts/tokenizer` and `artifacts/checkpoints/base`, scores CORE on the downloaded DCLM
bundle (`cfg.base_eval.bundle == "download"`) or the shipped 18-task subset ("offline"), writes
`core.csv` / `core.json` into the run's `phases/base_eval/` and returns the stage result.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from nanochat_core.checkpoint import checkpoint_dir, load_model
from nanochat_core.common import Runtime
from nanochat_core.config import WorkloadConfig
from nanochat_core.evals.core import evaluate_core, write_core_results
from nanochat_core.evals.core_tasks import (
    CoreTaskSet,
    load_bundle_tasks,
    load_offline_tasks,
    tasks_sha256,
)
from nanochat_core.observer import EVAL, LOG, PROGRESS
from nanochat_core.side_work import SAMPLES_FILE, SideWork, base_loss, write_samples
from nanochat_core.tokenizer import Tokenizer

BUNDLE_CHOICES = ("download", "offline")
SAMPLE_MAX_TOKENS = 16
# The fixed prompts nanochat samples greedily from a base model (spec section 6).
SAMPLE_PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "The chemical symbol of gold is",
    "If yesterday was Friday, then tomorrow will be",
    "The opposite of hot is",
    "The planets of the solar system are:",
    "My favorite color is",
    "If 5*x + 3 = 13, then x is",
)


def phase_dir(rt: Runtime) -> Path:
    """`<run>/phases/base_eval/` (the artifacts dir lives directly under the run dir)."""
    return Path(rt.artifacts_dir).parent / "phases" / "base_eval"


def resolve_tasks(bundle: str, rt: Runtime) -> CoreTaskSet:
    """The task set of `cfg.base_eval.bundle`: the downloaded DCLM bundle or the shipped subset."""
    if bundle == "offline":
        return load_offline_tasks()
    if bundle == "download":
        from nanochat_core.evals.bundle import ensure_eval_bundle

        if rt.is_local_main:  # one rank per node downloads (no shared disk); the others find it after the barrier
            bundle_dir = ensure_eval_bundle(rt.cache_dir)
        rt.barrier()
        if not rt.is_local_main:
            bundle_dir = ensure_eval_bundle(rt.cache_dir)
        return load_bundle_tasks(bundle_dir)
    raise ValueError(f"base_eval.bundle must be one of {BUNDLE_CHOICES}, got {bundle!r}")


@torch.inference_mode()
def greedy_samples(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    prompts: Sequence[str] = SAMPLE_PROMPTS,
    *,
    device: torch.device | str,
    max_tokens: int = SAMPLE_MAX_TOKENS,
    autocast_ctx: contextlib.AbstractContextManager | None = None,
) -> list[dict[str, str]]:
    """Greedy (argmax) continuation of each prompt (BOS first), stopping early at BOS/<|assistant_end|>."""
    stop = {tokenizer.bos_token_id, tokenizer.encode_special("<|assistant_end|>")}
    out = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt, prepend=tokenizer.bos_token_id)
        generated: list[int] = []
        for _ in range(max_tokens):
            x = torch.tensor([ids + generated], dtype=torch.long, device=device)
            with autocast_ctx if autocast_ctx is not None else contextlib.nullcontext():
                logits = model(x)
            nxt = int(logits[0, -1].float().argmax().item())
            if nxt in stop:
                break
            generated.append(nxt)
        out.append({"prompt": prompt, "completion": tokenizer.decode(generated)})
    return out


def run(cfg: WorkloadConfig, rt: Runtime) -> dict[str, Any]:
    """Score CORE on the base checkpoint; write core.csv/core.json; return the stage result."""
    t0 = time.perf_counter()
    ecfg = cfg.base_eval
    tokenizer = Tokenizer.load(Path(rt.artifacts_dir) / "tokenizer")
    model, meta = load_model(checkpoint_dir(rt.artifacts_dir, "base"), rt.device)
    task_set = resolve_tasks(ecfg.bundle, rt)
    rt.observer.event(LOG, f"CORE: {len(task_set)} tasks ({task_set.label}), max_per_task={ecfg.core_max_per_task}")

    def on_task_done(label: str, res: dict[str, Any], done: int, total: int) -> None:
        if rt.is_main:
            rt.observer.event(PROGRESS, done, total=total, what=f"core:{label}")
            rt.observer.event(
                LOG, f"{label}: accuracy {res['accuracy']:.4f} centered {res['centered']:.4f} (n={res['n']})"
            )

    result = evaluate_core(
        model,
        tokenizer,
        task_set.tasks,
        device=rt.device,
        max_per_task=ecfg.core_max_per_task,
        batch_size=ecfg.batch_size,
        rank=rt.rank,
        world_size=rt.world_size,
        autocast_ctx=rt.autocast,
        on_task_done=on_task_done,
    )
    result["missing_tasks"] = list(task_set.missing)
    result["bundle"] = ecfg.bundle
    result["checkpoint_step"] = meta.get("step")
    data_sha = tasks_sha256(task_set.tasks)
    result["eval_data_sha256"] = data_sha

    samples = greedy_samples(model, tokenizer, device=rt.device, autocast_ctx=rt.autocast())
    side = SideWork(cfg, rt)
    if side.enabled:  # ORIG's base_loss: train/val bpb on bpb_tokens, and its own greedy samples
        with side.timed("base_loss"):
            side.details["base_loss"] = base_loss(model, tokenizer, cfg, rt)
            greedy_samples(model, tokenizer, device=rt.device, autocast_ctx=rt.autocast())
    out: dict[str, Any] = {
        "core": result["core"],
        "core_label": result["label"],
        "core_tasks": {
            label: {k: r[k] for k in ("accuracy", "centered", "n", "random_baseline")}
            for label, r in result["tasks"].items()
        },
        "core_missing_tasks": list(task_set.missing),
        "core_max_per_task": ecfg.core_max_per_task,
        # few-shot source per task and prompts cropped to the rotary table (issue 16 item 12)
        "core_fewshot": {label: {k: r[k] for k in ("fewshot_used", "fewshot_from")} for label, r in result["tasks"].items()},
        "core_cropped_examples": result["cropped_examples"],
        "eval_data_sha256": data_sha,
        "examples": result["examples"],
        "samples": samples,
    }
    out["side_work"] = side.record()
    if rt.is_main:
        out["samples_json"] = str(write_samples(phase_dir(rt) / SAMPLES_FILE, samples))
        csv_path, json_path = write_core_results(result, phase_dir(rt))
        out["core_csv"], out["core_json"] = str(csv_path), str(json_path)
        rt.observer.event(EVAL, "core", value=result["core"], label=result["label"], step=meta.get("step"))
    rt.barrier()
    out["seconds"] = time.perf_counter() - t0
    return out
