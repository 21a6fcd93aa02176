"""Deterministic, resumable token loader whose batches do not depend on the number of processes.

A global batch is R = total_batch_tokens / seq_len rows of seq_len+1 tokens. Row j of every batch
comes from its own *row stream* j, which reads the training row groups j, j+R, j+2R, ... (counted
across all train files in order), tokenizes each document with BOS prepended, and cuts consecutive
windows of seq_len+1 tokens from the result (spanning documents, like ORIG's flat token buffer).
A process handles a fixed set of rows: rank r, micro-step k, local row b is global row
(k·W + r)·B + b. So 1 process with 8 micro-steps and 8 processes with 1 see exactly the same rows,
each stream is tokenized by exactly one process, and a stream's state is two integers.

Every optimizer step also gets a fingerprint: a hash of the global batch's token ids in row order.

Speed: a stream that runs out of tokens needs its next row group read and tokenized (a whole row
group: seconds of CPU at d20). Each stream therefore prefetches its next row group on a background
thread as soon as it starts on the current one (parquet decoding and tiktoken's batch encoder release
the GIL), so the training loop finds it ready. And `prefetch()` builds the next micro-batch early (the
training loop calls it right after `backward()` is queued, while the device computes); `state()` then
still describes the position *before* that batch, so a checkpoint resumes exactly. Neither changes
a single token of any batch.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from nanochat_core.tokenizer import Tokenizer


@dataclass(frozen=True)
class RowGroupRef:
    file: str
    index: int


def enumerate_row_groups(files: Sequence[str]) -> list[RowGroupRef]:
    refs = []
    for f in files:
        n = pq.ParquetFile(f).num_row_groups
        refs.extend(RowGroupRef(f, i) for i in range(n))
    return refs


def read_texts(ref: RowGroupRef) -> list[str]:
    table = pq.ParquetFile(ref.file).read_row_group(ref.index, columns=["text"])
    return table.column("text").to_pylist()


def flatten_with_bos(docs: Sequence[Sequence[int]], bos: int) -> np.ndarray:
    """[bos, *doc0, bos, *doc1, ...] as one int32 array, filled slice by slice (no per-token Python loop)."""
    total = sum(len(d) for d in docs) + len(docs)
    out = np.empty(total, dtype=np.int32)
    pos = 0
    for d in docs:
        out[pos] = bos
        n = len(d)
        out[pos + 1 : pos + 1 + n] = d
        pos += n + 1
    return out


def tokenize_row_group(ref: RowGroupRef, tokenizer: Tokenizer) -> np.ndarray:
    """One row group's documents, tokenized, each preceded by BOS, concatenated."""
    return flatten_with_bos(tokenizer.encode(read_texts(ref)), tokenizer.bos_token_id)


class RowStream:
    """Windows of `width` tokens cut from a fixed, repeating sequence of row groups.

    With an `executor`, the row group after the current one is read and tokenized there in the
    background; without one, every row group is loaded inline when needed (same tokens either way)."""

    def __init__(self, groups: list[RowGroupRef], tokenizer: Tokenizer, width: int,
                 executor: ThreadPoolExecutor | None = None) -> None:
        if not groups:
            raise ValueError("a row stream needs at least one row group")
        self.groups, self.tokenizer, self.width = groups, tokenizer, width
        self.cursor = 0  # row groups consumed (monotonic; wraps over `groups` for later epochs)
        self.offset = 0  # tokens of the current buffer already used
        self._buffer = np.empty(0, dtype=np.int32)
        self._executor = executor
        self._ahead: tuple[int, Future] | None = None  # (cursor, its pending load)
        self.inline_loads = 0  # row groups this stream had to wait for (not prefetched in time or at all)
        if executor is not None:  # the first row group too: it loads while the model is built and compiled
            self._ahead = (0, executor.submit(self._load_now, 0))

    def _load_now(self, cursor: int) -> np.ndarray:
        return tokenize_row_group(self.groups[cursor % len(self.groups)], self.tokenizer)

    def _load(self, cursor: int) -> np.ndarray:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[1].cancelled():
            ahead = None  # cancelled by close()
        if ahead is not None and ahead[0] == cursor:
            future = ahead[1]
            if not future.done():
                self.inline_loads += 1
            buf = future.result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            self.inline_loads += 1
            buf = self._load_now(cursor)
        if self._executor is not None:
            self._ahead = (cursor + 1, self._executor.submit(self._load_now, cursor + 1))
        return buf

    def next_window(self) -> np.ndarray:
        parts, need = [], self.width
        while need > 0:
            if self.offset >= len(self._buffer):
                if len(self._buffer) or self.offset:
                    self.cursor += 1
                self._buffer, self.offset = self._load(self.cursor), 0
            take = self._buffer[self.offset : self.offset + need]
            parts.append(take)
            self.offset += len(take)
            need -= len(take)
        return np.concatenate(parts)

    def state(self) -> dict[str, int]:
        return {"cursor": self.cursor, "offset": self.offset, "loaded": int(len(self._buffer) > 0)}

    def restore(self, state: dict[str, int]) -> None:
        self.cursor, self.offset = state["cursor"], state["offset"]
        if state.get("loaded"):
            self._buffer = self._load(self.cursor)
        else:
            self._buffer = np.empty(0, dtype=np.int32)
            if self._ahead is not None:
                self._ahead[1].cancel()
                self._ahead = None


class TokenLoader:
    """Micro-batches for one process; `next()` returns (inputs int64 (B,T), targets int64 (B,T), row ids)."""

    def __init__(
        self,
        files: Sequence[str],
        tokenizer: Tokenizer,
        *,
        seq_len: int,
        rows_per_step: int,
        device_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        prefetch_threads: int = 1,
    ) -> None:
        if rows_per_step % (device_batch_size * world_size):
            raise ValueError(
                f"rows per step ({rows_per_step}) must divide by device_batch_size*world_size "
                f"({device_batch_size}*{world_size})"
            )
        groups = enumerate_row_groups(files)
        if len(groups) < rows_per_step:
            raise ValueError(
                f"the training data has {len(groups)} row groups but a batch has {rows_per_step} rows; "
                "each row needs its own row group stream (use more shards or smaller row groups)"
            )
        self.seq_len, self.B, self.R = seq_len, device_batch_size, rows_per_step
        self.rank, self.W = rank, world_size
        self.grad_accum = rows_per_step // (device_batch_size * world_size)
        self.device = torch.device(device)
        self.micro = 0  # micro-step within the current optimizer step
        # one background worker keeps ahead of the streams (their row groups run out one after another);
        # 0 threads: load inline (the reference behaviour, for tests and benchmarks)
        self._executor = (ThreadPoolExecutor(max_workers=prefetch_threads, thread_name_prefix="rowgroup-prefetch")
                          if prefetch_threads > 0 else None)
        self.streams: dict[int, RowStream] = {
            j: RowStream(groups[j :: rows_per_step], tokenizer, seq_len + 1, self._executor) for j in self.my_rows()
        }
        self._ready: tuple[tuple[torch.Tensor, torch.Tensor, dict[int, int]], dict] | None = None  # (batch, state before it)

    def rows_of(self, micro: int) -> list[int]:
        first = (micro * self.W + self.rank) * self.B
        return list(range(first, first + self.B))

    def my_rows(self) -> list[int]:
        return [j for k in range(self.grad_accum) for j in self.rows_of(k)]

    def next(self) -> tuple[torch.Tensor, torch.Tensor, dict[int, int]]:
        """(inputs, targets, {global row: row hash}) of the next micro-batch (the prefetched one, if any)."""
        if self._ready is not None:
            batch, self._ready = self._ready[0], None
            return batch
        return self._build()

    def prefetch(self) -> None:
        """Build the next micro-batch now (call it once the device has work queued); `next()` returns it."""
        if self._ready is None:
            before = self._state_now()
            self._ready = (self._build(), before)

    @property
    def inline_loads(self) -> int:
        """Row groups the streams had to wait for (the first of each stream always counts)."""
        return sum(s.inline_loads for s in self.streams.values())

    def close(self) -> None:
        """Stop prefetching: queued row groups are cancelled (the one being tokenized finishes); the loader
        still works afterwards, loading inline."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            for stream in self.streams.values():
                stream._executor = None

    def _build(self) -> tuple[torch.Tensor, torch.Tensor, dict[int, int]]:
        rows = self.rows_of(self.micro)
        self.micro = (self.micro + 1) % self.grad_accum
        windows = np.stack([self.streams[j].next_window() for j in rows]).astype(np.int64)
        hashes = {j: row_hash(windows[i]) for i, j in enumerate(rows)}
        batch = torch.from_numpy(windows)
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        return batch[:, :-1], batch[:, 1:], hashes

    def state(self) -> dict:
        """The position of the next batch `next()` returns (a prefetched batch not yet taken is not consumed)."""
        return self._ready[1] if self._ready is not None else self._state_now()

    def _state_now(self) -> dict:
        return {"micro": self.micro, "streams": {j: s.state() for j, s in self.streams.items()}}

    def restore(self, state: dict) -> None:
        self._ready = None
        self.micro = state["micro"]
        for j, s in state["streams"].items():
            self.streams[int(j)].restore(s)


def row_hash(row: np.ndarray) -> int:
    """63-bit hash of one row's token ids (stable across platforms)."""
    data = np.asarray(row, dtype="<i8").tobytes()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little") >> 1


def batch_fingerprint(row_hashes: Sequence[int]) -> str:
    """Fingerprint of a global batch from its per-row hashes in global row order."""
    h = hashlib.sha256()
    for value in row_hashes:
        h.update(int(value).to_bytes(8, "little"))
    return h.hexdigest()[:16]


def val_windows(files: Sequence[str], tokenizer: Tokenizer, *, seq_len: int, num_rows: int) -> torch.Tensor:
    """The first `num_rows` consecutive windows of seq_len+1 tokens of the val split (same every time)."""
    need = num_rows * (seq_len + 1)
    chunks, have = [], 0
    for ref in enumerate_row_groups(files):
        arr = tokenize_row_group(ref, tokenizer)
        chunks.append(arr)
        have += len(arr)
        if have >= need:
            break
    tokens = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int32)
    usable = min(num_rows, len(tokens) // (seq_len + 1))
    if usable == 0:
        raise ValueError(f"the val split has fewer than {seq_len + 1} tokens")
    return torch.from_numpy(tokens[: usable * (seq_len + 1)].astype(np.int64)).view(usable, seq_len + 1)
