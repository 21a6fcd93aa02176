"""Engine decode throughput on CPU: a depth-4 model (vocab 4,096), batch 1 and 8.

Run with `python -m pytest tests/perf/test_engine_speed.py --benchmark-only` (on a shared/loaded
CPU, `OMP_NUM_THREADS=1` avoids thread spinning and gives steadier numbers). Each round prefills a
64-token prompt and decodes up to 128 steps per row (temperature 1, top-k 50, fixed seed, so a round
always takes the same number of steps); `extra_info` records decode tokens per second.
"""

from __future__ import annotations

import gzip
import json
import time
from importlib import resources

import pytest
import torch

from nanochat_core.engine import Engine
from nanochat_core.model import GPTConfig, build_model
from nanochat_core.tokenizer import Tokenizer

pytestmark = pytest.mark.perf

PROMPT_TOKENS, DECODE_TOKENS = 64, 128


def corpus_texts(max_chars: int = 400_000) -> list[str]:
    path = resources.files("nanochat_core") / "data" / "corpus" / "corpus_train.jsonl.gz"
    texts, total = [], 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            total += len(texts[-1])
            if total >= max_chars:
                break
    return texts


@pytest.fixture(scope="module")
def engine_and_prompt() -> tuple[Engine, list[int]]:
    texts = corpus_texts()
    tok = Tokenizer.train(texts, 4096)
    model = build_model(GPTConfig.from_depth(4, vocab_size=4096, seq_len=1024), torch.device("cpu"), seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # init zeroes lm_head and projections: perturb so sampling is non-trivial
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    prompt = tok.encode(texts[0], prepend="<|bos|>")[:PROMPT_TOKENS]
    return Engine(model.eval(), tok), prompt


@pytest.mark.parametrize("batch", [1, 8])
def test_decode_tokens_per_second(benchmark, engine_and_prompt, batch: int) -> None:
    engine, prompt = engine_and_prompt

    def decode() -> tuple[int, float]:
        start = time.perf_counter()
        steps = sum(1 for _ in engine.generate(
            prompt, num_samples=batch, max_tokens=DECODE_TOKENS, temperature=1.0, top_k=50, seed=0
        ))
        return steps, time.perf_counter() - start

    steps, _ = decode()  # warm-up (also fixes the step count: the seed makes rounds identical)
    assert steps > 0
    steps, _ = benchmark.pedantic(decode, rounds=3, iterations=1)
    tok_per_s = steps * batch / benchmark.stats.stats.mean
    benchmark.extra_info.update({"batch": batch, "steps": steps, "decode_tok_per_s": round(tok_per_s, 1)})
    print(f"\nbatch {batch}: {steps} steps, {tok_per_s:.1f} decode tok/s (prefill included)")
