"""Benchmark: CORE examples scored per second on a small model (offline tasks, CPU or the run's device)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from core_dist_worker import perturbed_model, tiny_tokenizer  # noqa: E402

from nanochat_core.evals.core import evaluate_core  # noqa: E402
from nanochat_core.evals.core_tasks import load_offline_tasks, select_tasks  # noqa: E402

# one task per type plus two few-shot multiple-choice tasks (the shared-prefix path)
TASKS = ("copa", "winogrande", "lambada_openai", "arc_easy", "piqa")
MAX_PER_TASK = 8


@pytest.mark.perf
def test_core_examples_per_second(benchmark):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core box: one thread is faster and steadier
    tok = tiny_tokenizer(vocab_size=1024)
    model = perturbed_model(tok.vocab_size, depth=2, seq_len=256)
    tasks = select_tasks(load_offline_tasks(), TASKS).tasks

    def run() -> dict:
        return evaluate_core(model, tok, tasks, device="cpu", max_per_task=MAX_PER_TASK, batch_size=8)

    try:
        result = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    finally:
        torch.set_num_threads(threads)
    examples = result["examples"]
    assert examples == MAX_PER_TASK * len(TASKS)
    benchmark.extra_info["examples"] = examples
    benchmark.extra_info["examples_per_s"] = examples / benchmark.stats.stats.mean
    benchmark.extra_info["core"] = result["core"]
