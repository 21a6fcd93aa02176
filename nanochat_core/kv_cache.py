"""Key/value cache for incremental decoding: one preallocated tensor per layer pair (K, V)."""

from __future__ import annotations

import torch


class KVCache:
    """Holds K and V of shape (L, 2, B, H_kv, T_max, head_dim) and the number of positions filled.

    The model calls `insert(layer, k, v)` in every layer and `advance(T)` once after the last layer.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        num_heads: int,
        seq_len: int,
        head_dim: int,
        num_layers: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.shape = (num_layers, 2, batch_size, num_heads, seq_len, head_dim)
        self.cache = torch.zeros(self.shape, device=device, dtype=dtype)
        self.pos = 0

    @property
    def capacity(self) -> int:
        return self.shape[4]

    def reset(self) -> None:
        self.pos = 0

    def insert(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys/values (B, H, T, D) after the filled prefix; return all keys/values so far."""
        t0, t1 = self.pos, self.pos + k.size(2)
        if t1 > self.capacity:
            self._grow(t1)
        self.cache[layer, 0, :, :, t0:t1] = k
        self.cache[layer, 1, :, :, t0:t1] = v
        return self.cache[layer, 0, :, :, :t1], self.cache[layer, 1, :, :, :t1]

    def advance(self, n: int) -> None:
        self.pos += n

    def prefill_from(self, other: "KVCache") -> None:
        """Copy a (batch-1 or same-batch) prefilled cache into this one, broadcasting over rows."""
        if other.pos > self.capacity:
            raise ValueError(f"cannot copy {other.pos} positions into a cache of {self.capacity}")
        n = other.pos
        self.cache[:, :, :, :, :n] = other.cache[:, :, :, :, :n].to(self.cache.dtype)
        self.pos = n

    def _grow(self, needed: int) -> None:
        new_len = ((needed + 1023) // 1024) * 1024
        grown = torch.zeros((*self.shape[:4], new_len, self.shape[5]), device=self.cache.device, dtype=self.cache.dtype)
        grown[:, :, :, :, : self.capacity] = self.cache
        self.cache = grown
        self.shape = tuple(grown.shape)
