"""Benchmarks: BPE training (chars/s, rustbpe) and tiktoken encoding (tokens/s) on the shipped corpus.

rustbpe trains on its rayon pool, sized by `RAYON_NUM_THREADS` when the process starts (default: all
cores); run this file under `RAYON_NUM_THREADS=1` and `=2` to compare. Encoding threads are a parameter.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from nanochat_core.tokenizer import Tokenizer

CORPUS_DIR = Path(__file__).resolve().parents[2] / "nanochat_core" / "data" / "corpus"
TRAIN_CHARS = 2_000_000
VOCAB = 4096  # the smoke preset's


def _texts(name: str, limit_chars: int, doc_cap: int = 10_000) -> list[str]:
    texts, seen = [], 0
    with gzip.open(CORPUS_DIR / name, "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"][:doc_cap]
            texts.append(text)
            seen += len(text)
            if seen >= limit_chars:
                break
    return texts


@pytest.fixture(scope="module")
def train_texts() -> list[str]:
    """The train split with the presets' 10k-char document cap (about 1.5M chars: all of it)."""
    return _texts("corpus_train.jsonl.gz", TRAIN_CHARS)


@pytest.mark.perf
def test_tokenizer_training_chars_per_second(benchmark, train_texts):
    chars = sum(map(len, train_texts))
    tok = benchmark.pedantic(lambda: Tokenizer.train(train_texts, VOCAB), rounds=3, iterations=1, warmup_rounds=0)
    assert tok.vocab_size == VOCAB
    benchmark.extra_info.update(
        {
            "chars": chars,
            "vocab_size": VOCAB,
            "chars_per_s": chars / benchmark.stats.stats.min,
            "rayon_threads": os.environ.get("RAYON_NUM_THREADS", f"default ({os.cpu_count()} cores)"),
            "loadavg_1m": os.getloadavg()[0],
        }
    )


@pytest.mark.perf
@pytest.mark.parametrize("threads", [1, 2])
def test_tiktoken_encoding_tokens_per_second(benchmark, train_texts, threads):
    tok = Tokenizer.train(train_texts[:40], VOCAB)
    val = _texts("corpus_val.jsonl.gz", 10**9, doc_cap=10**9)  # the whole val split, ~0.5M chars
    chars = sum(map(len, val))
    ids = benchmark.pedantic(lambda: tok.encode(val, num_threads=threads), rounds=5, iterations=1, warmup_rounds=1)
    n_tokens = sum(map(len, ids))
    assert tok.decode(ids[0]) == val[0]
    benchmark.extra_info.update(
        {
            "threads": threads,
            "chars": chars,
            "tokens": n_tokens,
            "tokens_per_s": n_tokens / benchmark.stats.stats.min,
            "chars_per_token": chars / n_tokens,
            "loadavg_1m": os.getloadavg()[0],
        }
    )
