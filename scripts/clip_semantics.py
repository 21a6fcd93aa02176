"""Measure global-norm clipping (ours) against per-shard clipping (ORIG's per-rank local clip).

ORIG clips each rank's local gradient to norm 1.0 before its optimizers average across ranks (8
ranks on the speedrun). nanobench averages first and clips the global norm once, which keeps the
math independent of the number of processes. This script trains the smoke-size model (d4, seq 256,
2,048-token batches) on the shipped corpus for `--steps` steps twice per seed: once with the global
clip, once with the global batch cut into `--shards` virtual shards whose gradients are each clipped
before averaging. It prints one JSON object with the final val bpb per seed and mode, the difference
and the share of steps on which the clip bound.

    nice -n 15 python scripts/clip_semantics.py --steps 200 --seeds 1 2 3 --out clip.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import torch

from nanochat_core.evals.bpb import evaluate_bpb
from nanochat_core.model import GPTConfig, build_model
from nanochat_core.optim import MuonAdamW
from nanochat_core.schedules import lr_multiplier, muon_momentum
from nanochat_core.tokenizer import Tokenizer

CORPUS = Path(__file__).resolve().parents[1] / "nanochat_core" / "data" / "corpus"
CLIP = 1.0


def read_texts(name: str, max_chars: int) -> list[str]:
    texts, total = [], 0
    with gzip.open(CORPUS / name, "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            texts.append(text)
            total += len(text)
            if total >= max_chars:
                break
    return texts


def token_rows(tok: Tokenizer, texts: list[str], seq_len: int) -> torch.Tensor:
    ids: list[int] = []
    for doc in tok.encode(texts, prepend=tok.bos_token_id, num_threads=1):
        ids.extend(doc)
    n = len(ids) // (seq_len + 1)
    return torch.tensor(ids[: n * (seq_len + 1)], dtype=torch.long).view(n, seq_len + 1)


def shard_clipped_grads(model, params, x, y, shards: int) -> tuple[list[torch.Tensor], int]:
    """Mean over shards of each shard's gradient clipped to norm CLIP; returns (grads, shards clipped)."""
    acc = [torch.zeros_like(p) for p in params]
    bound = 0
    for xs, ys in zip(x.chunk(shards), y.chunk(shards)):
        model.zero_grad(set_to_none=True)
        model(xs, ys).backward()
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        coef = min(1.0, CLIP / (float(norm) + 1e-6))
        bound += coef < 1.0
        for a, p in zip(acc, params):
            a.add_(p.grad, alpha=coef / shards)
    return acc, bound


def train(mode: str, seed: int, args, tok: Tokenizer, train_rows: torch.Tensor, val_rows: torch.Tensor) -> dict:
    config = GPTConfig.from_depth(args.depth, vocab_size=tok.vocab_size, seq_len=args.seq_len)
    model = build_model(config, torch.device("cpu"), seed=seed)
    opt = MuonAdamW(model.param_groups(), model_dim=config.n_embd, grad_clip=CLIP if mode == "global" else 0.0)
    params = opt.all_params()
    order = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(seed))
    rows_per_step = args.batch_tokens // args.seq_len
    bound_steps = 0
    for step in range(args.steps):
        idx = order[(step * rows_per_step + torch.arange(rows_per_step)) % len(order)]
        batch = train_rows[idx]
        x, y = batch[:, :-1], batch[:, 1:]
        opt.set_lr_multiplier(lr_multiplier(step, args.steps, warmup_ratio=0.0, warmdown_ratio=0.2, final_lr_frac=0.0))
        opt.set_momentum(muon_momentum(step, start=0.85, end=0.95, ramp_steps=args.steps // 2))
        if mode == "global":
            model.zero_grad(set_to_none=True)
            model(x, y).backward()
            norm = float(opt.step())
            bound_steps += norm > CLIP
        else:
            grads, bound = shard_clipped_grads(model, params, x, y, args.shards)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            bound_steps += bound > 0
        opt.zero_grad()
    bpb = evaluate_bpb(model, val_rows, tok.token_bytes(), batch_size=8)
    return {"val_bpb": bpb, "steps_clipped": bound_steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-tokens", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--val-rows", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if (args.batch_tokens // args.seq_len) % args.shards:
        raise SystemExit(f"--shards {args.shards} must divide the {args.batch_tokens // args.seq_len} rows per step")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    tok = Tokenizer.train(read_texts("corpus_train.jsonl.gz", 2_000_000), args.vocab)
    train_rows = token_rows(tok, read_texts("corpus_train.jsonl.gz", 8_000_000), args.seq_len)
    val_rows = token_rows(tok, read_texts("corpus_val.jsonl.gz", 10**9), args.seq_len)[: args.val_rows]
    runs = []
    for seed in args.seeds:
        for mode in ("global", f"per-{args.shards}-shards"):
            r = train(mode, seed, args, tok, train_rows, val_rows)
            runs.append({"seed": seed, "mode": mode, **r})
            print(json.dumps(runs[-1]), flush=True)
    diffs = [b["val_bpb"] - a["val_bpb"] for a, b in zip(runs[::2], runs[1::2])]
    summary = {
        "steps": args.steps, "shards": args.shards, "depth": args.depth, "seq_len": args.seq_len,
        "batch_tokens": args.batch_tokens, "vocab": args.vocab, "val_tokens": int(val_rows.numel() - len(val_rows)),
        "runs": runs,
        "diff_shard_minus_global": diffs,
        "mean_diff": statistics.fmean(diffs),
        "stdev_diff": statistics.stdev(diffs) if len(diffs) > 1 else None,
        "seconds": time.time() - t0,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
