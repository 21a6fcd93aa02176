"""Helpers shared by the CORE tests, and the worker that `test_core_distributed.py` runs under torchrun.

As a script: `torchrun --nproc_per_node=2 tests/core/core_dist_worker.py WORK_DIR OUT_JSON TASKS MAX BATCH`
loads the tokenizer (`WORK_DIR/tokenizer`) and model (`WORK_DIR/model.pt` + `model_config.json`)
written by the test, scores CORE on the offline tasks named in TASKS (comma-separated) with its rank
and world size, and rank 0 writes the result to OUT_JSON.
"""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from nanochat_core.model import GPT, GPTConfig, build_model
from nanochat_core.tokenizer import Tokenizer

CORPUS = Path(__file__).resolve().parents[2] / "nanochat_core" / "data" / "corpus" / "corpus_train.jsonl.gz"


def tiny_tokenizer(vocab_size: int = 512, docs: int = 20, chars: int = 3000) -> Tokenizer:
    """A small BPE vocabulary trained on a few KB of the shipped corpus (well under a second)."""
    texts = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        for line in fh:
            texts.append(json.loads(line)["text"][:chars])
            if len(texts) >= docs:
                break
    return Tokenizer.train(texts, vocab_size)


def perturbed_model(vocab_size: int, depth: int = 1, seq_len: int = 256, seed: int = 0, scale: float = 0.05) -> GPT:
    """A GPT whose zero-initialized matrices are filled with seeded noise, so its logits vary."""
    model = build_model(GPTConfig.from_depth(depth, vocab_size=vocab_size, seq_len=seq_len), torch.device("cpu"), seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def save_model(model: GPT, directory: Path) -> None:
    torch.save(model.state_dict(), directory / "model.pt")
    (directory / "model_config.json").write_text(json.dumps(asdict(model.config)))


def load_saved_model(directory: Path) -> GPT:
    config = GPTConfig(**json.loads((directory / "model_config.json").read_text()))
    model = build_model(config, torch.device("cpu"), 0)
    model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
    return model.eval()


def main(argv: list[str]) -> None:
    from nanochat_core.common import init_runtime, shutdown_runtime
    from nanochat_core.evals.core import evaluate_core
    from nanochat_core.evals.core_tasks import load_offline_tasks, select_tasks

    work, out_json, task_labels, max_per_task, batch_size = argv
    torch.set_num_threads(1)
    rt = init_runtime(device="cpu", seed=0, artifacts_dir=work)
    tokenizer = Tokenizer.load(Path(work) / "tokenizer")
    model = load_saved_model(Path(work))
    tasks = select_tasks(load_offline_tasks(), task_labels.split(","))
    result = evaluate_core(
        model,
        tokenizer,
        tasks.tasks,
        device=rt.device,
        max_per_task=int(max_per_task),
        batch_size=int(batch_size),
        rank=rt.rank,
        world_size=rt.world_size,
        autocast_ctx=rt.autocast,
    )
    if rt.is_main:
        result["world_size"] = rt.world_size
        Path(out_json).write_text(json.dumps(result))
    shutdown_runtime(rt)


if __name__ == "__main__":
    main(sys.argv[1:])
