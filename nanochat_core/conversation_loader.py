"""Batches of rendered conversations for chat training (spec 8.1, 8.2, ORIG).

- :class:`ConversationTokenStream` (mid-training): each rank walks the mixture from index ``rank``
  with stride ``W``, renders every conversation and appends its tokens to a flat buffer; a batch is
  the next ``B*T + 1`` buffered tokens viewed as (B, T) inputs and targets shifted by one. The render
  mask is ignored (loss on every token). One pass over the mixture sets ``exhausted``.
- :class:`ConversationBatches` (SFT): each rank takes conversations ``rank, rank+W, ...`` (cycling over
  epochs), ``B`` per batch, one per row, padded to the longest with ``<|assistant_end|>``; targets are
  -1 where the render mask is 0 and on padding (:func:`collate_conversations`).

Both are deterministic and resumable from ``state()`` (a few integers, plus the stream's buffer).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch

from nanochat_core.chat_format import render_conversation

Rendered = tuple[list[int], list[int]]  # (ids, mask)


class Dataset(Protocol):
    def __len__(self) -> int: ...

    def get_example(self, index: int) -> dict[str, Any]: ...


def rank_indices(num_examples: int, rank: int, world_size: int) -> range:
    """The mixture indices a rank visits in one pass: rank, rank+W, ..."""
    return range(rank, num_examples, world_size)


class ConversationTokenStream:
    """(inputs, targets) int64 (B, T) micro-batches of a flat token stream of rendered conversations."""

    def __init__(
        self,
        dataset: Dataset,
        tokenizer,
        *,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        max_tokens: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(dataset) == 0:
            raise ValueError("the conversation mixture is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.dataset, self.tokenizer = dataset, tokenizer
        self.B, self.T, self.rank, self.W = batch_size, seq_len, rank, world_size
        self.max_tokens = max_tokens or seq_len
        self.device = torch.device(device)
        self.cursor = rank  # next mixture index to render
        self.passes = 0  # completed passes over the mixture (this rank)
        self.buffer: list[int] = []

    @property
    def needed(self) -> int:
        return self.B * self.T + 1

    @property
    def exhausted(self) -> bool:
        """True once this rank has rendered every conversation of its share at least once."""
        return self.passes > 0

    @property
    def progress(self) -> float:
        """Fraction of the mixture consumed by this rank (can exceed 1 after a wrap)."""
        return self.passes + self.cursor / len(self.dataset)

    def _render_next(self) -> None:
        ids, _ = render_conversation(self.tokenizer, self.dataset.get_example(self.cursor), self.max_tokens)
        self.buffer.extend(ids)
        self.cursor += self.W
        if self.cursor >= len(self.dataset):
            self.cursor -= len(self.dataset)
            if self.cursor >= len(self.dataset):  # fewer examples than ranks
                self.cursor = self.rank % len(self.dataset)
            self.passes += 1

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        while len(self.buffer) < self.needed:
            self._render_next()
        chunk = torch.tensor(self.buffer[: self.needed], dtype=torch.long)
        del self.buffer[: self.needed]
        x, y = chunk[:-1].view(self.B, self.T), chunk[1:].view(self.B, self.T)
        if self.device.type == "cuda":
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y

    def state(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "passes": self.passes, "buffer": list(self.buffer)}

    def restore(self, state: dict[str, Any]) -> None:
        self.cursor, self.passes, self.buffer = state["cursor"], state["passes"], list(state["buffer"])


def collate_conversations(rendered: Sequence[Rendered], pad_id: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of (ids, mask) -> inputs (pad `pad_id`) and targets (-1 where mask is 0 and on padding).

    Every row is padded to the longest conversation minus one (inputs and targets are shifted by one).
    """
    width = max(len(ids) for ids, _ in rendered) - 1
    if width < 1:
        raise ValueError("every conversation renders to at least 2 tokens")
    inputs = torch.full((len(rendered), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rendered), width), -1, dtype=torch.long)
    for i, (ids, mask) in enumerate(rendered):
        n = len(ids) - 1
        row_ids = torch.tensor(ids, dtype=torch.long)
        row_mask = torch.tensor(mask[1:], dtype=torch.bool)
        inputs[i, :n] = row_ids[:-1]
        targets[i, :n] = torch.where(row_mask, row_ids[1:], torch.full_like(row_ids[1:], -1))
    device = torch.device(device)
    return inputs.to(device), targets.to(device)


class ConversationBatches:
    """SFT micro-batches: `batch_size` conversations per rank, padded, one conversation per row."""

    def __init__(
        self,
        dataset: Dataset,
        tokenizer,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        max_tokens: int = 2048,
        device: torch.device | str = "cpu",
    ) -> None:
        self.indices = rank_indices(len(dataset), rank, world_size)
        if len(self.indices) == 0:
            raise ValueError(f"rank {rank} gets no conversations from a mixture of {len(dataset)}")
        self.dataset, self.tokenizer = dataset, tokenizer
        self.B, self.max_tokens = batch_size, max_tokens
        self.device = torch.device(device)
        self.pad_id = tokenizer.encode_special("<|assistant_end|>")
        self.consumed = 0  # conversations taken so far by this rank, over all epochs

    @property
    def epoch(self) -> int:
        return self.consumed // len(self.indices)

    def index_at(self, position: int) -> int:
        """Mixture index of the rank's `position`-th conversation (epochs repeat the same order)."""
        return self.indices[position % len(self.indices)]

    def next_rendered(self) -> list[Rendered]:
        batch = []
        for _ in range(self.B):
            conversation = self.dataset.get_example(self.index_at(self.consumed))
            batch.append(render_conversation(self.tokenizer, conversation, self.max_tokens))
            self.consumed += 1
        return batch

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return collate_conversations(self.next_rendered(), self.pad_id, self.device)

    def state(self) -> dict[str, int]:
        return {"consumed": self.consumed}

    def restore(self, state: dict[str, int]) -> None:
        self.consumed = state["consumed"]
