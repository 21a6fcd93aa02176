"""CORE on 2 gloo ranks (torchrun subprocess) equals CORE in one process, exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_dist_worker import perturbed_model, save_model, tiny_tokenizer  # noqa: E402

from nanochat_core.evals.core import evaluate_core  # noqa: E402
from nanochat_core.evals.core_tasks import load_offline_tasks, select_tasks  # noqa: E402

WORKER = Path(__file__).resolve().parent / "core_dist_worker.py"
# one task of each type, plus a few-shot multiple-choice task; 5 examples so the ranks get 3 and 2
TASKS = "copa,winograd,lambada_openai,arc_easy"
MAX_PER_TASK = 5
BATCH_SIZE = 3


@pytest.mark.slow  # ~20 s on 2 shared cores: two torchrun workers import torch and train nothing
def test_two_process_core_equals_one_process(tmp_path):
    tok = tiny_tokenizer()
    tok.save(tmp_path / "tokenizer")
    model = perturbed_model(tok.vocab_size, depth=1, scale=0.3)
    save_model(model, tmp_path)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tasks = select_tasks(load_offline_tasks(), TASKS.split(","))
        single = evaluate_core(
            model, tok, tasks.tasks, device="cpu", max_per_task=MAX_PER_TASK, batch_size=BATCH_SIZE
        )
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "dist.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(WORKER), str(tmp_path), str(out), TASKS, str(MAX_PER_TASK), str(BATCH_SIZE),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dist = json.loads(out.read_text())

    assert dist["world_size"] == 2
    assert dist["label"] == single["label"] == "CORE-offline-4"
    assert dist["core"] == single["core"]
    for label, ref in single["tasks"].items():
        got = dist["tasks"][label]
        assert (got["accuracy"], got["centered"], got["n"], got["correct"]) == (
            ref["accuracy"], ref["centered"], ref["n"], ref["correct"]
        )  # fmt: skip
    # the model is not trivial: it gets some, but not all, examples right
    total = sum(r["correct"] for r in single["tasks"].values())
    assert 0 < total < sum(r["n"] for r in single["tasks"].values())
