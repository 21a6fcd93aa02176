"""Shared by the chat-stage tests: a tiny base checkpoint (tokenizer + d2 model) built once per module.

`build_base(root)` trains a 512-token tokenizer on a little of the shipped corpus, materializes the
shipped corpus (download stage, shipped source) and pretrains a depth-2, seq-128 model for a few
steps. `fresh_artifacts(template, dest)` copies it so each test writes its own checkpoints.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import torch

from nanochat_core.common import Runtime
from nanochat_core.config import BaseEvalConfig, DataConfig, MidTrainConfig, PretrainConfig, RLConfig, SFTConfig, TokenizerConfig, WorkloadConfig
from nanochat_core.observer import ListObserver
from nanochat_core.stages import download, pretrain
from nanochat_core.tokenizer import Tokenizer

CORPUS = Path(__file__).resolve().parents[2] / "nanochat_core" / "data" / "corpus" / "corpus_train.jsonl.gz"
SEQ_LEN = 128


def tiny_config(**sections) -> WorkloadConfig:
    """A WorkloadConfig for a d2/seq-128 model on shipped data; `sections` replace whole sections."""
    base = WorkloadConfig(
        preset="test-tiny",
        seed=7,
        tokenizer=TokenizerConfig(vocab_size=512),
        data=DataConfig(source="shipped"),
        base_eval=BaseEvalConfig(bundle="offline"),  # the download stage then fetches nothing
        pretrain=PretrainConfig(
            depth=2, seq_len=SEQ_LEN, total_batch_tokens=8 * SEQ_LEN, device_batch_size=8, num_iterations=6,
            target_param_data_ratio=-1.0, eval_every=-1, eval_tokens=4 * SEQ_LEN, muon_momentum_ramp_steps=10,
        ),
        mid_train=MidTrainConfig(total_batch_tokens=4 * SEQ_LEN, device_batch_size=2, num_iterations=4, eval_every=2,
                                 eval_tokens=4 * SEQ_LEN, mixture_limit=8),
        sft=SFTConfig(device_batch_size=2, target_examples_per_step=4, num_iterations=4, eval_every=2, eval_steps=2,
                      eval_metrics_every=-1, eval_metrics_max_problems=4, mixture_limit=8),
        rl=RLConfig(enabled=True, num_samples=4, device_batch_size=2, examples_per_step=2, max_new_tokens=12,
                    num_iterations=2, eval_every=-1, eval_examples=2, checkpoint_every=0),
    )
    return dataclasses.replace(base, **sections)


def runtime(artifacts: Path, cache: Path, *, resume: bool = False, observer=None) -> Runtime:
    return Runtime(device=torch.device("cpu"), seed=7, observer=observer or ListObserver(), artifacts_dir=artifacts,
                   cache_dir=cache, compile=False, resume=resume)


def corpus_texts(limit_chars: int = 60_000) -> list[str]:
    texts, seen = [], 0
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            texts.append(text)
            seen += len(text)
            if seen >= limit_chars:
                break
    return texts


def build_base(root: Path) -> tuple[Path, Path]:
    """(artifacts_dir, cache_dir) holding a tokenizer and a tiny pretrained base checkpoint."""
    torch.set_num_threads(1)
    artifacts, cache = root / "artifacts", root / "cache"
    cfg = tiny_config()
    Tokenizer.train(corpus_texts(), cfg.tokenizer.vocab_size).save(artifacts / "tokenizer")
    rt = runtime(artifacts, cache)
    download.run(cfg, rt)
    pretrain.run(cfg, rt)
    return artifacts, cache


def fresh_artifacts(template: Path, dest: Path) -> Path:
    """A copy of the template artifacts (tokenizer + base checkpoint) for one test."""
    shutil.copytree(template, dest)
    return dest


def weights_of(directory: Path, step: int) -> dict[str, torch.Tensor]:
    return torch.load(directory / f"model_{step:06d}.pt", map_location="cpu", weights_only=True)


def drop_step(directory: Path, step: int) -> None:
    """Delete every file of one checkpoint step (as if the run had been killed before writing it)."""
    for path in directory.glob(f"*_{step:06d}*"):
        path.unlink()


CHAT_TEXTS = [
    "Hello! How are you today? I am fine, thank you. What is 12 + 7? It is 19.",
    "Héllo wörld, naïve café — 日本語 テキスト, emoji 😀🎉 and ✓ marks.",
    "The quick brown fox jumps over the lazy dog. Letters: A B C D.",
] * 20


def tiny_chat_model(seed: int = 0, seq_len: int = 64):
    """(model, tokenizer): a d1 GPT with seeded random weights (non-uniform logits) and a 300-token BPE."""
    from nanochat_core.model import GPTConfig, build_model

    torch.set_num_threads(1)
    tok = Tokenizer.train(CHAT_TEXTS, 300)
    model = build_model(GPTConfig.from_depth(1, vocab_size=tok.vocab_size, seq_len=seq_len), torch.device("cpu"), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    model.eval()
    return model, tok


def save_chat_run(run_dir: Path, stages: tuple[str, ...] = ("sft",), seed: int = 0) -> Path:
    """A run directory whose artifacts hold the tiny chat model as the given checkpoint stages."""
    from nanochat_core.checkpoint import checkpoint_dir, save_checkpoint

    model, tok = tiny_chat_model(seed)
    tok.save(run_dir / "artifacts" / "tokenizer")
    for stage in stages:
        save_checkpoint(checkpoint_dir(run_dir / "artifacts", stage), 1, model=model, meta={"stage": stage})
    return run_dir
