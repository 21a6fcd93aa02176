"""Stage `chat_eval`: score a chat checkpoint (mid, sft or rl) with ChatCORE (spec section 10).

Loads ``artifacts/checkpoints/<cfg.chat_eval.source>`` and ``artifacts/tokenizer``, evaluates the
tasks of ``cfg.chat_eval.tasks`` (data from the hub, or the shipped samples when the run's data
source is "shipped"), writes ``chat_eval.csv`` / ``chat_eval.json`` into ``<run>/phases/chat_eval/``
and returns ``{"chatcore", "chatcore_tasks", "source", "examples", ...}``.
"""

from __future__ import annotations

from typing import Any

from nanochat_core import observer as obs
from nanochat_core.checkpoint import checkpoint_dir, load_model
from nanochat_core.common import Runtime
from nanochat_core.config import WorkloadConfig
from nanochat_core.evals.chat import TaskResult, run_chatcore, write_report
from nanochat_core.tasks import eval_task, task_source
from nanochat_core.tokenizer import Tokenizer

CHAT_SOURCES = ("mid", "sft", "rl")
STAGE = "chat_eval"


def run(cfg: WorkloadConfig, rt: Runtime) -> dict[str, Any]:
    ce = cfg.chat_eval
    if ce.source not in CHAT_SOURCES:
        raise ValueError(f"chat_eval.source must be one of {CHAT_SOURCES}, got {ce.source!r}")
    data_source = task_source(cfg.data.source)
    tasks = {name: eval_task(name, source=data_source, cache_dir=rt.cache_dir) for name in ce.tasks}

    model, meta = load_model(checkpoint_dir(rt.artifacts_dir, ce.source), rt.device)
    tokenizer = Tokenizer.load(rt.artifacts_dir / "tokenizer")
    engine = None
    if any(task.eval_type == "generative" for task in tasks.values()):
        from nanochat_core.engine import Engine

        engine = Engine(model, tokenizer)
    rt.log(f"chat_eval: scoring the {ce.source} checkpoint (step {meta.get('step')}) on {', '.join(tasks)} [{data_source} data]")

    def progress(name: str, done: int, total: int) -> None:
        if rt.is_main and (done == total or done % 16 == 0):
            rt.observer.event(obs.PROGRESS, done, total=total, what=f"chat_eval/{name} (rank 0)")

    def on_result(result: TaskResult) -> None:
        if rt.is_main:
            rt.observer.event(obs.EVAL, f"chat_eval/{result.name}", value=result.accuracy, step=meta.get("step"))
            rt.observer.event(obs.LOG, f"{result.name}: {result.correct}/{result.total} = {result.accuracy:.4f}")

    report = run_chatcore(
        model,
        tokenizer,
        tasks,
        rt,
        engine=engine,
        batch_size=ce.batch_size,
        num_samples=ce.num_samples,
        max_new_tokens=ce.max_new_tokens,
        temperature=ce.temperature,
        top_k=ce.top_k,
        max_problems=ce.max_problems,
        progress=progress,
        on_result=on_result,
    )
    result: dict[str, Any] = {
        "chatcore": report.chatcore,
        "chatcore_reason": report.chatcore_reason,
        "chatcore_cat": report.chatcore_cat,
        "chatcore_tasks": {name: r.accuracy for name, r in report.tasks.items()},
        "source": ce.source,
        "task_data": data_source,
        "examples": sum(r.total for r in report.tasks.values()),
    }
    if rt.is_main:
        rt.observer.event(obs.EVAL, "chat_eval/ChatCORE", value=report.chatcore, step=meta.get("step"), reason=report.chatcore_reason)
        out_dir = rt.artifacts_dir.parent / "phases" / STAGE
        csv_path, json_path = write_report(report, out_dir, extra={"source": ce.source, "task_data": data_source, "step": meta.get("step")})
        result.update(csv=str(csv_path), json=str(json_path))
    rt.barrier()
    return result
