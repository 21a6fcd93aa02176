"""Full training-step throughput (forward + backward + MuonAdamW step) on this machine's CPU.

Prints one JSON object: the CPU model, whether it has native bf16 matmul (avx512_bf16 / amx_bf16), the
Newton-Schulz dtype the optimizer picks here, and for each Newton-Schulz dtype measured the best and
median tok/s over `--steps` timed steps (after `--warmup`), with the 1-minute load average before and
after. The model is the smoke shape by default (d4, seq 256, vocab 4096, 8 rows = 2,048 tokens).

    nice -n 10 python scripts/step_throughput.py --threads 1 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from nanochat_core.model import GPTConfig, build_model
from nanochat_core.optim import MuonAdamW, cpu_has_native_bf16, newton_schulz_dtype


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(depth: int, seq: int, vocab: int, rows: int, ns_dtype: torch.dtype, warmup: int, steps: int) -> list[float]:
    config = GPTConfig.from_depth(depth, vocab_size=vocab, seq_len=seq)
    model = build_model(config, torch.device("cpu"), seed=0)
    opt = MuonAdamW(model.param_groups(), model_dim=config.n_embd)
    opt.ns_dtype = ns_dtype
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (rows, seq), generator=gen)
    y = torch.roll(x, -1, dims=1)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        model(x, y).backward()
        opt.step()
        opt.zero_grad()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return [rows * seq / t for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {
        "cpu": cpu_model(),
        "native_bf16_matmul": cpu_has_native_bf16(),
        "newton_schulz_dtype_chosen": str(newton_schulz_dtype("cpu")).removeprefix("torch."),
        "torch": torch.__version__,
        "threads": args.threads,
        "shape": {"depth": args.depth, "seq_len": args.seq_len, "vocab": args.vocab, "rows": args.rows},
        "loadavg_1m_before": os.getloadavg()[0],
        "newton_schulz": {},
    }
    for name in args.dtypes:
        tps = measure(args.depth, args.seq_len, args.vocab, args.rows, getattr(torch, name), args.warmup, args.steps)
        out["newton_schulz"][name] = {"best_tok_per_s": max(tps), "median_tok_per_s": statistics.median(tps), "steps": len(tps)}
    out["loadavg_1m_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
