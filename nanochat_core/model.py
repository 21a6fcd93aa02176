"""The GPT of nanochat ORIG (spec section 4.2), written from the spec's facts.

Pre-norm transformer; no positional embeddings (RoPE, base 10,000, half-split); QK-norm after RoPE;
untied embedding / lm_head; parameter-free RMSNorm after the embedding and everywhere else;
ReLU² MLP; no biases; logits soft-capped at 15 in the lm_head's (autocast) dtype, then cast to fp32,
as ORIG; rotary tables in bf16 on CUDA, as ORIG keeps them; GQA-capable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanochat_core.device import has_native_bf16
from nanochat_core.kv_cache import KVCache

SOFTCAP = 15.0
ROPE_BASE = 10_000.0


@dataclass(frozen=True)
class GPTConfig:
    seq_len: int = 2048
    vocab_size: int = 65_536
    n_layer: int = 20
    n_head: int = 10
    n_kv_head: int = 10
    n_embd: int = 1280

    @classmethod
    def from_depth(cls, depth: int, *, vocab_size: int = 65_536, seq_len: int = 2048) -> "GPTConfig":
        """ORIG shape rule: width = 64·depth, heads = ceil(width/128), kv heads = heads."""
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        n_embd = 64 * depth
        n_head = max(1, math.ceil(n_embd / 128))
        if n_embd % n_head:
            raise ValueError(f"depth {depth}: width {n_embd} is not divisible by {n_head} heads")
        return cls(seq_len=seq_len, vocab_size=vocab_size, n_layer=depth, n_head=n_head, n_kv_head=n_head, n_embd=n_embd)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def rotary_dtype(device: torch.device | str) -> torch.dtype:
    """ORIG keeps the rotary tables in bf16; we do on CUDA (where the speedrun runs, under bf16
    autocast) and keep fp32 tables on other devices, whose default forward is fp32."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Half-split rotation of x (B, T, H, D) by the angles whose cos/sin are (1, T, 1, D/2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        if self.n_head % self.n_kv_head:
            raise ValueError("n_head must be a multiple of n_kv_head")
        d = config.n_embd
        self.c_q = nn.Linear(d, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(d, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(d, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor], kv_cache: KVCache | None) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        cos, sin = cos_sin
        q, k = rms_norm(apply_rotary(q, cos, sin)), rms_norm(apply_rotary(k, cos, sin))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        if kv_cache is not None:
            k, v = kv_cache.insert(self.layer_idx, k, v)
        Tq, Tk = q.size(2), k.size(2)
        gqa = self.n_head != self.n_kv_head
        if kv_cache is None or Tq == Tk:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        elif Tq == 1:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=False, enable_gqa=gqa)
        else:  # a chunk after a cached prefix: see the whole prefix, causal inside the chunk
            prefix = Tk - Tq
            mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=prefix)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos_sin, kv_cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(rms_norm(x), cos_sin, kv_cache)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "h": nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.rotary_len = 10 * config.seq_len  # positions cached, as ORIG
        cos, sin = self._rotary_tables(self.rotary_len, device=self.lm_head.weight.device)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    # ---- construction ---------------------------------------------------------------------------
    def _rotary_tables(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        hd = self.config.head_dim
        if device.type == "meta":
            empty = torch.empty(1, length, 1, hd // 2, device=device)
            return empty, empty.clone()
        inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, hd, 2, dtype=torch.float32, device=device) / hd))
        t = torch.arange(length, dtype=torch.float32, device=device)
        freqs = torch.outer(t, inv_freq)
        dtype = rotary_dtype(device)  # computed in fp32, then rounded once, as ORIG
        return freqs.cos().to(dtype)[None, :, None, :], freqs.sin().to(dtype)[None, :, None, :]

    @torch.no_grad()
    def init_weights(self) -> None:
        """The ORIG init (uses the ambient torch RNG: seed it first, see `build_model`)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                fan_out, fan_in = module.weight.shape
                std = (1.0 / math.sqrt(fan_in)) * min(1.0, math.sqrt(fan_out / fan_in))
                module.weight.normal_(0.0, std)
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 1.0)
        self.lm_head.weight.zero_()
        for block in self.transformer.h:
            block.attn.c_proj.weight.zero_()
            block.mlp.c_proj.weight.zero_()
        cos, sin = self._rotary_tables(self.rotary_len, self.lm_head.weight.device)
        self.cos, self.sin = cos, sin
        if has_native_bf16(self.lm_head.weight.device):  # fp32 below sm_80 (T4, V100): no bf16 there
            self.transformer.wte.to(dtype=torch.bfloat16)

    # ---- accounting -----------------------------------------------------------------------------
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> int:
        """ORIG: 6·(params − wte) + 12·L·H·hd·T (forward + backward, attention included)."""
        c = self.config
        matmul_params = self.num_params() - self.transformer.wte.weight.numel()
        return 6 * matmul_params + 12 * c.n_layer * c.n_head * c.head_dim * c.seq_len

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Which optimizer owns what: Muon for block matrices, AdamW for the two embeddings."""
        return {
            "matrix": list(self.transformer.h.parameters()),
            "embedding": [self.transformer.wte.weight],
            "unembedding": [self.lm_head.weight],
        }

    # ---- forward --------------------------------------------------------------------------------
    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        loss_reduction: str = "mean",
    ) -> torch.Tensor:
        """Logits (B, T, V) in fp32 when `targets` is None, else the cross-entropy loss
        (ignore_index −1; `loss_reduction="none"` gives per-token losses of shape (B, T))."""
        B, T = idx.shape
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > self.cos.size(1):
            raise ValueError(f"sequence of {start + T} positions exceeds the rotary cache ({self.cos.size(1)})")
        cos_sin = (self.cos[:, start : start + T], self.sin[:, start : start + T])
        x = rms_norm(self.transformer.wte(idx))
        for block in self.transformer.h:
            x = block(x, cos_sin, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(T)
        x = rms_norm(x)
        logits = self.lm_head(x)  # bf16 under autocast
        logits = (SOFTCAP * torch.tanh(logits / SOFTCAP)).float()  # capped in that dtype, then fp32 (ORIG)
        if targets is None:
            return logits
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1, reduction=loss_reduction
        )
        return loss.view(B, T) if loss_reduction == "none" else loss


def build_model(config: GPTConfig, device: torch.device, seed: int) -> GPT:
    """Construct on the meta device, materialize on `device`, initialize from a forked RNG seeded by `seed`."""
    from nanochat_core.common import torch_rng_state

    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device=device)
    with torch_rng_state(seed, device):
        model.init_weights()
    return model
