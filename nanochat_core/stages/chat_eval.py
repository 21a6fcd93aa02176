"""Stage `chat_eval`: score a chat checkpoint (mid, sft or rl) with ChatCORE (spec section 10).

Loads ``artifacts/checkpoints/<cfg.chat_eval.source>`` and ``artifacts/tokenizer``, evaluates the
tasks of ``cfg.chat_eval.tasks`` (data from the hub, or the shipped samples when the run's data
source is "shipped"), writes ``chat_eval.csv`` / ``chat_eval.json`` into ``<run>/phases/chat_eval/``
and returns ``{"chatcore", "chatcore_tasks", "source", "examples", "code_sandbox", ...}`` (``code_sandbox``:
the OS sandbox mechanism HumanEval's programs ran in, see :mod:`nanochat_core.sandbox`; "none" only
when the user allowed it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nanochat_core import observer as obs
from nanochat_core.checkpoint import checkpoint_dir, load_model
from nanochat_core.common import Runtime
from nanochat_core.config import WorkloadConfig
from nanochat_core.evals.chat import TaskResult, run_chatcore, write_report
from nanochat_core.side_work import SAMPLES_FILE, SideWork, chat_samples, write_samples
from nanochat_core.tasks import eval_task, task_provenance, task_source
from nanochat_core.tokenizer import Tokenizer

CHAT_SOURCES = ("mid", "sft", "rl")
STAGE = "chat_eval"


def run(cfg: WorkloadConfig, rt: Runtime, *, out_subdir: str = "", side_work: bool = True) -> dict[str, Any]:
    """Score `chat_eval.source`; with extras.orig_side_work, first score the mid checkpoint too (as ORIG's
    speedrun does after midtraining), into `phases/chat_eval/mid/`, timed as a sub-phase."""
    ce = cfg.chat_eval
    if ce.source not in CHAT_SOURCES:
        raise ValueError(f"chat_eval.source must be one of {CHAT_SOURCES}, got {ce.source!r}")
    side = SideWork(cfg, rt)
    if side_work and side.enabled and ce.source != "mid" and cfg.mid_train.enabled:
        with side.timed("chat_eval_mid"):
            mid = run(dataclasses.replace(cfg, chat_eval=dataclasses.replace(ce, source="mid")), rt, out_subdir="mid", side_work=False)
        side.details["mid"] = {k: mid.get(k) for k in ("chatcore", "chatcore_cat", "chatcore_tasks", "examples", "csv", "json", "samples_json")}
    data_source = task_source(cfg.data.source)
    tasks = {name: eval_task(name, source=data_source, cache_dir=rt.cache_dir) for name in ce.tasks}
    # Model-written code runs only inside an OS sandbox (or with the user's explicit permission):
    # decide before anything is generated, and record which mechanism ran.
    code_sandbox = tasks["HumanEval"].check_sandbox() if "HumanEval" in tasks else None
    if code_sandbox is not None:
        rt.log(f"chat_eval: HumanEval programs run in the '{code_sandbox}' sandbox (see nanochat_core/sandbox.py)")

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
        # which rows / wording each task used: Hugging Face rows or shipped stand-ins (issue 16 item 14)
        "task_rows": {name: task_provenance(task) for name, task in tasks.items()},
        "examples": sum(r.total for r in report.tasks.values()),
        "code_sandbox": code_sandbox,
    }
    if rt.is_main:
        rt.observer.event(obs.EVAL, "chat_eval/ChatCORE", value=report.chatcore, step=meta.get("step"), reason=report.chatcore_reason)
        out_dir = rt.artifacts_dir.parent / "phases" / STAGE / out_subdir
        if engine is None:
            from nanochat_core.engine import Engine

            engine = Engine(model, tokenizer)
        result["samples_json"] = str(write_samples(out_dir / SAMPLES_FILE, chat_samples(engine, tokenizer)))
        csv_path, json_path = write_report(report, out_dir, extra={"source": ce.source, "task_data": data_source, "task_rows": result["task_rows"], "step": meta.get("step"), "code_sandbox": code_sandbox})
        result.update(csv=str(csv_path), json=str(json_path))
    if side_work:
        result["side_work"] = side.record()
    rt.barrier()
    return result
