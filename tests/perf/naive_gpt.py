"""A plain, naively written PyTorch GPT of the same shape as nanochat_core's, for speed comparisons.

Same math (RoPE, QK-norm, RMSNorm, ReLU² MLP, untied embeddings, soft-capped fp32 logits, no biases)
written the obvious way: attention as explicit matmul + causal mask + softmax (no fused kernel, no
nn.MultiheadAttention), RMSNorm from mean-of-squares, per-layer rotary tables recomputed each forward,
and torch.optim.AdamW for every parameter. It is the baseline our tok/s is reported against.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class NaiveRMSNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + 1e-6)


def naive_rotary(x: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, D) by position, computing the angle table every call."""
    T, D = x.shape[-2], x.shape[-1]
    half = D // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, half, dtype=torch.float32) * 2 / D))
    angles = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq[None, :]
    cos, sin = torch.cos(angles), torch.sin(angles)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class NaiveAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.norm = NaiveRMSNorm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.heads, self.head_dim).transpose(1, 2)

        q = self.norm(naive_rotary(split(self.q(x))))
        k = self.norm(naive_rotary(split(self.k(x))))
        v = split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)
        return self.out(y)


class NaiveMLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.up = nn.Linear(dim, 4 * dim, bias=False)
        self.down = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.up(x))
        return self.down(h * h)


class NaiveBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = NaiveRMSNorm(), NaiveRMSNorm()
        self.attn = NaiveAttention(dim, heads)
        self.mlp = NaiveMLP(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class NaiveGPT(nn.Module):
    def __init__(self, vocab_size: int, depth: int, dim: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.norm_in, self.norm_out = NaiveRMSNorm(), NaiveRMSNorm()
        self.blocks = nn.ModuleList([NaiveBlock(dim, heads) for _ in range(depth)])
        self.head = nn.Linear(dim, vocab_size, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(self.embed(idx))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm_out(x)).float()
        logits = 15.0 * torch.tanh(logits / 15.0)
        return nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def naive_like(depth: int, vocab_size: int, seed: int = 0) -> NaiveGPT:
    """The naive model with nanochat_core's shape rule for `depth` (width 64·depth, 128-wide heads)."""
    dim = 64 * depth
    torch.manual_seed(seed)
    model = NaiveGPT(vocab_size, depth, dim, max(1, math.ceil(dim / 128)))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return model


def naive_train_step(model: NaiveGPT, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()
