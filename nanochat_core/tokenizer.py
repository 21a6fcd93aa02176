"""Byte-level BPE tokenizer (spec section 2): trained by `rustbpe`, encoded by `tiktoken`.

Training uses nanochat's split pattern (GPT-4's, with digit groups of 1-2) and appends the 9 special
tokens after the learned ranks. The trained ranks are stored as a plain JSON file (no pickle), so a
tokenizer can be hashed, shipped in a result bundle's workload identity and loaded safely.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import tiktoken

from nanochat_core.atomic import atomic_open, atomic_write_bytes

SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

SPECIAL_TOKENS = (
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
)

TOKENIZER_FILE = "tokenizer.json"
TOKEN_BYTES_FILE = "token_bytes.pt"


class Tokenizer:
    """A trained BPE vocabulary wrapped as a `tiktoken.Encoding`."""

    def __init__(self, mergeable_ranks: dict[bytes, int], pattern: str = SPLIT_PATTERN) -> None:
        n = len(mergeable_ranks)
        self.mergeable_ranks = mergeable_ranks
        self.pattern = pattern
        self.special_tokens = {tok: n + i for i, tok in enumerate(SPECIAL_TOKENS)}
        self.enc = tiktoken.Encoding(
            name="nanobench-bpe",
            pat_str=pattern,
            mergeable_ranks=mergeable_ranks,
            special_tokens=self.special_tokens,
        )

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, *, buffer_size: int = 8192) -> "Tokenizer":
        """Learn `vocab_size - 9` ranks with rustbpe (deterministic: ties break by pair order)."""
        import rustbpe

        n_learned = vocab_size - len(SPECIAL_TOKENS)
        if n_learned < 256:
            raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)}, got {vocab_size}")
        trainer = rustbpe.Tokenizer()
        trainer.train_from_iterator(iter(texts), n_learned, buffer_size=buffer_size, pattern=SPLIT_PATTERN)
        ranks = {bytes(tok): rank for tok, rank in trainer.get_mergeable_ranks()}
        return cls(ranks, trainer.get_pattern())

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write `tokenizer.json` (and `token_bytes.pt`) atomically; returns the json path."""
        import torch

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TOKENIZER_FILE
        atomic_write_bytes(path, self.to_json().encode("utf-8"))
        with atomic_open(directory / TOKEN_BYTES_FILE) as fh:
            torch.save(self.token_bytes(), fh)
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "Tokenizer":
        path = Path(directory) / TOKENIZER_FILE
        data = json.loads(path.read_text(encoding="utf-8"))
        if list(data["special_tokens"]) != list(SPECIAL_TOKENS):
            raise ValueError(f"{path}: unexpected special tokens {data['special_tokens']}")
        ranks = {base64.b64decode(tok): rank for tok, rank in data["ranks"]}
        return cls(ranks, data["pattern"])

    def to_json(self) -> str:
        ranks = sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1])
        return json.dumps(
            {
                "format": "nanobench-bpe-1",
                "pattern": self.pattern,
                "special_tokens": list(SPECIAL_TOKENS),
                "ranks": [[base64.b64encode(tok).decode("ascii"), rank] for tok, rank in ranks],
            },
            separators=(",", ":"),
        )

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    # ---- encoding -----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.enc.n_vocab

    @property
    def bos_token_id(self) -> int:
        return self.special_tokens["<|bos|>"]

    def encode_special(self, token: str) -> int:
        return self.special_tokens[token]

    def encode(
        self,
        text: str | Sequence[str],
        *,
        prepend: int | str | None = None,
        append: int | str | None = None,
        num_threads: int = 8,
    ) -> list[int] | list[list[int]]:
        """Encode ordinary text (special-token strings are not interpreted); a list is batch-encoded."""
        pre = self._as_id(prepend)
        post = self._as_id(append)
        if isinstance(text, str):
            ids = self.enc.encode_ordinary(text)
            return ([pre] if pre is not None else []) + ids + ([post] if post is not None else [])
        batch = self.enc.encode_ordinary_batch(list(text), num_threads=num_threads)
        if pre is not None:
            batch = [[pre] + ids for ids in batch]
        if post is not None:
            batch = [ids + [post] for ids in batch]
        return batch

    def decode(self, ids: Sequence[int]) -> str:
        return self.enc.decode(list(ids))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self.enc.decode_bytes(list(ids))

    def id_to_token_bytes(self, token_id: int) -> bytes:
        return self.enc.decode_single_token_bytes(token_id)

    def token_bytes(self):
        """int32 tensor: bytes per token id, 0 for special tokens (the bpb denominator).

        As ORIG counts them: the UTF-8 length of the token decoded on its own, so a token that is
        not valid UTF-8 alone counts its replacement characters (U+FFFD, 3 bytes each) rather than
        its raw bytes (docs/fidelity.md gives the effect on bpb).
        """
        import torch

        counts = [0] * self.vocab_size
        for rank in self.mergeable_ranks.values():
            counts[rank] = len(self.decode([rank]).encode("utf-8"))
        return torch.tensor(counts, dtype=torch.int32)

    def _as_id(self, token: int | str | None) -> int | None:
        if token is None or isinstance(token, int):
            return token
        return self.encode_special(token)


def truncated_docs(texts: Iterable[str], max_chars: int, doc_cap: int) -> Iterator[str]:
    """Cap each document at `doc_cap` characters; stop once the total is past `max_chars`.

    ORIG's rule: the document that crosses `max_chars` is kept whole (up to `doc_cap`), and reaching
    exactly `max_chars` does not stop the text.
    """
    seen = 0
    for text in texts:
        doc = text[:doc_cap]
        yield doc
        seen += len(doc)
        if seen > max_chars:
            return
