"""Inference engine (spec section 11): KV-cached batched sampling with calculator tool use.

The prompt is prefilled once at batch 1, its cache is broadcast into a decode cache with one row per
sample, and all rows are decoded in lock-step, one token per step. Between `<|python_start|>` and
`<|python_end|>` a row's tokens form a calculator expression; when it evaluates, the engine force-feeds
`<|output_start|>` + the result's tokens + `<|output_end|>` into that row, one token per step.

As ORIG does, the first token is sampled once, from the batch-1 prefill logits, and given to every
row; the rows diverge from the second token on. All samples of one prompt therefore share their first
token, which RL's sampled groups and pass@k depend on (docs/fidelity.md).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import nn

from nanochat_core.calculator import evaluate
from nanochat_core.device import has_native_bf16
from nanochat_core.kv_cache import KVCache

TokenColumn = list[int]
MaskColumn = list[int]


def sample_next_token(
    logits: torch.Tensor, generator: torch.Generator, temperature: float = 1.0, top_k: int | None = None
) -> torch.Tensor:
    """One token id per row of `logits` (B, V) -> (B,): argmax at temperature 0, else (top-k) sampling."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits.float()
    if top_k is not None and 0 < top_k < logits.size(-1):
        values, indices = torch.topk(logits, top_k, dim=-1)
        probs = torch.softmax(values / temperature, dim=-1)
        choice = torch.multinomial(probs, num_samples=1, generator=generator)
        return indices.gather(-1, choice).squeeze(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@dataclass
class _RowState:
    """Per-row decoding state: forced tokens waiting to be fed and the open calculator expression."""

    forced: deque[int] = field(default_factory=deque)
    in_python: bool = False
    python_tokens: list[int] = field(default_factory=list)
    done: bool = False


class Engine:
    """Generates completions from a GPT (`model(idx, kv_cache=cache) -> logits`) and a `Tokenizer`.

    `autocast_ctx` is a zero-argument factory of the context each forward runs in; by default bf16
    autocast on CUDA and nothing elsewhere. `cache_dtype` defaults to bf16 under that default CUDA
    autocast and to the model's parameter dtype otherwise.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        autocast_ctx: Callable[[], AbstractContextManager] | None = None,
        cache_dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        param = next(model.parameters())
        self.device = param.device
        if autocast_ctx is None:
            if has_native_bf16(self.device):  # fp32 on GPUs without bf16 (T4, V100), MPS and the CPU
                autocast_ctx = lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                cache_dtype = cache_dtype or torch.bfloat16
            else:
                autocast_ctx = contextlib.nullcontext
        self.autocast_ctx = autocast_ctx
        self.cache_dtype = cache_dtype or (param.dtype if param.dtype.is_floating_point else torch.float32)
        special = tokenizer.encode_special
        self.bos = tokenizer.bos_token_id
        self.assistant_end = special("<|assistant_end|>")
        self.python_start = special("<|python_start|>")
        self.python_end = special("<|python_end|>")
        self.output_start = special("<|output_start|>")
        self.output_end = special("<|output_end|>")

    # ---- internals ------------------------------------------------------------------------------
    @property
    def max_positions(self) -> int:
        """Positions the model can address: its rotary table length (else its configured seq_len)."""
        cos = getattr(self.model, "cos", None)
        return cos.size(1) if isinstance(cos, torch.Tensor) else self.model.config.seq_len

    def _new_cache(self, batch_size: int, seq_len: int) -> KVCache:
        c = self.model.config
        return KVCache(
            batch_size=batch_size,
            num_heads=c.n_kv_head,
            seq_len=seq_len,
            head_dim=c.head_dim,
            num_layers=c.n_layer,
            device=self.device,
            dtype=self.cache_dtype,
        )

    def _last_logits(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        with self.autocast_ctx():
            return self.model(ids, kv_cache=cache)[:, -1, :].float()

    def _tool_output(self, python_tokens: list[int]) -> list[int]:
        """Forced tokens for a finished calculator call ([] when it does not evaluate)."""
        result = evaluate(self.tokenizer.decode(python_tokens))
        if result is None:
            return []
        return [self.output_start, *self.tokenizer.encode(result), self.output_end]

    def _advance_row(self, row: _RowState, sampled: int) -> tuple[int, int]:
        """Choose this row's token (forced or sampled) and update its tool-use state."""
        if row.done:  # finished rows are padded with BOS (mask 0) until every row finishes
            return self.bos, 0
        if row.forced:
            token, mask = row.forced.popleft(), 0
        else:
            token, mask = sampled, 1
        if token in (self.assistant_end, self.bos):
            row.done = True
        elif token == self.python_start:
            row.in_python, row.python_tokens = True, []
        elif token == self.python_end and row.in_python:
            row.in_python = False
            row.forced.extend(self._tool_output(row.python_tokens))
        elif row.in_python:
            row.python_tokens.append(token)
        return token, mask

    # ---- public API -----------------------------------------------------------------------------
    def generate(
        self,
        tokens: Sequence[int],
        *,
        num_samples: int = 1,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 42,
    ) -> Iterator[tuple[TokenColumn, MaskColumn]]:
        """Yield `(token_column, mask_column)` per decode step, one entry per sample row.

        Mask 1 marks sampled tokens, 0 forced tool-output tokens and the BOS padding of rows that
        already finished (on `<|assistant_end|>` or `<|bos|>`). Stops when all rows finished or after
        `max_tokens` steps (fewer if the prompt nearly fills the model's rotary table).
        """
        if not tokens:
            raise ValueError("the prompt must contain at least one token")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        prompt_len = len(tokens)
        if prompt_len >= self.max_positions:
            raise ValueError(f"prompt of {prompt_len} tokens leaves no room in {self.max_positions} positions")
        max_tokens = min(max_tokens, self.max_positions - prompt_len)
        if max_tokens <= 0:
            return
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        rows = [_RowState() for _ in range(num_samples)]

        with torch.inference_mode():
            prefill = self._new_cache(1, prompt_len)
            ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
            logits = self._last_logits(ids, prefill)  # (1, V): the first token is drawn once
            cache = self._new_cache(num_samples, prompt_len + max_tokens)
            cache.prefill_from(prefill)
            del prefill

        for step in range(max_tokens):
            with torch.inference_mode():
                sampled = sample_next_token(logits, generator, temperature, top_k).tolist()
            if step == 0:
                sampled = sampled * num_samples  # ORIG: the prefill's one sample, broadcast to every row
            column, masks = zip(*(self._advance_row(row, tok) for row, tok in zip(rows, sampled)))
            yield list(column), list(masks)
            if step + 1 == max_tokens or all(row.done for row in rows):
                return
            with torch.inference_mode():
                ids = torch.tensor(column, dtype=torch.long, device=self.device).unsqueeze(1)
                logits = self._last_logits(ids, cache)

    def generate_batch(
        self,
        tokens: Sequence[int],
        *,
        num_samples: int = 1,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 42,
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Full sequences (prompt + completion, terminal token dropped) and their masks (prompt = 0)."""
        sequences = [list(tokens) for _ in range(num_samples)]
        masks = [[0] * len(tokens) for _ in range(num_samples)]
        finished = [False] * num_samples
        steps = self.generate(
            tokens, num_samples=num_samples, max_tokens=max_tokens, temperature=temperature, top_k=top_k, seed=seed
        )
        for column, mask_column in steps:
            for i, (token, mask) in enumerate(zip(column, mask_column)):
                if finished[i]:
                    continue
                if token in (self.assistant_end, self.bos):
                    finished[i] = True
                    continue
                sequences[i].append(token)
                masks[i].append(mask)
        return sequences, masks

    def stream_text(
        self,
        tokens: Sequence[int],
        *,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 42,
    ) -> Iterator[str]:
        """Decoded text pieces of one sample, never splitting a multi-byte UTF-8 character.

        Pending tokens are emitted once their decode does not end in U+FFFD (an incomplete
        character); whatever is still pending when generation ends is flushed as is. Stops before
        the terminal token, which is not part of the text.
        """
        pending: list[int] = []
        steps = self.generate(tokens, max_tokens=max_tokens, temperature=temperature, top_k=top_k, seed=seed)
        for column, _ in steps:
            token = column[0]
            if token in (self.assistant_end, self.bos):
                break
            pending.append(token)
            text = self.tokenizer.decode(pending)
            if not text.endswith("\ufffd"):
                pending.clear()
                if text:
                    yield text
        if pending:
            yield self.tokenizer.decode(pending)
