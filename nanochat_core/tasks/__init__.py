"""Chat tasks: conversations for mid/SFT/RL training and the ChatCORE evaluation.

``Task`` / ``TaskMixture`` live in :mod:`.base`; one module per dataset; :mod:`.mixtures` builds the
mid-training and SFT mixtures. :func:`eval_task` makes the ChatCORE evaluation split of a task by
name, from the hub (``source="download"``) or from the shipped samples (``source="shipped"``).
"""

from __future__ import annotations

import os

from nanochat_core.tasks.arc import ARC
from nanochat_core.tasks.base import MultipleChoiceTask, Task, TaskMixture, render_multiple_choice, shuffled_order
from nanochat_core.tasks.gsm8k import GSM8K
from nanochat_core.tasks.humaneval import HumanEval
from nanochat_core.tasks.identity import CustomJSON, Identity, identity_task
from nanochat_core.tasks.mmlu import MMLU
from nanochat_core.tasks.smoltalk import SmolTalk
from nanochat_core.tasks.sources import SOURCES
from nanochat_core.tasks.spelling import SimpleSpelling, SpellingBee

EVAL_TASK_NAMES = ("ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee")
SPELLING_BEE_EVAL_SIZE = 256  # ORIG scores 256 generated test examples


def task_source(data_source: str) -> str:
    """Chat-task data source for a run: "shipped" when the run's data source is "shipped", else "download"."""
    return "shipped" if data_source == "shipped" else "download"


def task_provenance(task: Task) -> str:
    """Where a task's rows come from, for results: its own ``provenance``, else its data source."""
    if task.provenance:
        return task.provenance
    source = getattr(task, "source", None)
    if source == "download":
        return f"Hugging Face rows of {getattr(task, 'name', type(task).__name__)} (hub order, seed-42 shuffle)"
    if source == "shipped":
        return f"shipped {getattr(task, 'name', type(task).__name__)} rows (offline)"
    return type(task).__name__


def eval_task(
    name: str,
    *,
    source: str = "download",
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    stop: int | None = None,
) -> Task:
    """The ChatCORE evaluation split of task ``name`` (first ``stop`` shuffled examples if given)."""
    common = {"source": source, "cache_dir": cache_dir, "endpoint": endpoint, "stop": stop}
    if name in ("ARC-Easy", "ARC-Challenge"):
        return ARC(name, "test", **common)
    if name == "MMLU":
        return MMLU("all", "test", **common)
    if name == "GSM8K":
        return GSM8K("main", "test", **common)
    if name == "HumanEval":
        return HumanEval(**common)
    if name == "SpellingBee":
        return SpellingBee(SPELLING_BEE_EVAL_SIZE, "test", source=source, cache_dir=cache_dir, stop=stop)
    raise ValueError(f"unknown chat eval task {name!r}; expected one of {EVAL_TASK_NAMES}")


__all__ = [
    "ARC",
    "CustomJSON",
    "EVAL_TASK_NAMES",
    "GSM8K",
    "HumanEval",
    "Identity",
    "MMLU",
    "MultipleChoiceTask",
    "SOURCES",
    "SimpleSpelling",
    "SmolTalk",
    "SpellingBee",
    "Task",
    "TaskMixture",
    "eval_task",
    "identity_task",
    "render_multiple_choice",
    "shuffled_order",
    "task_provenance",
    "task_source",
]
