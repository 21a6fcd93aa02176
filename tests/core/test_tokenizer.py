"""Tokenizer: rustbpe training exported to tiktoken encodes exactly as rustbpe does; specials, determinism, I/O."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import rustbpe
import torch

from nanochat_core.tokenizer import SPECIAL_TOKENS, SPLIT_PATTERN, Tokenizer, truncated_docs

CORPUS_DIR = Path(__file__).resolve().parents[2] / "nanochat_core" / "data" / "corpus"
VOCAB = 1024

# Text that exercises the split pattern's corners: contractions, digit runs, CR/LF, runs of spaces, non-Latin
# scripts, emoji (multi-byte), punctuation clusters.
EDGE_TEXTS = [
    "I'm sure they'll say we've done it; you're right, he'd've.",
    "Year 2025: 1234567 + 89 = 1234656 (approx. 3.14159).",
    "line one\r\nline two\n\n\n   indented\t\ttabs   trailing   ",
    "서울의 봄은 짧지만 강렬하다. Καλημέρα κόσμε! Привет, мир. 日本語のテキスト。",
    "emoji 🙂🚀 and ZWJ 👩‍💻 -- ellipsis… «quotes» “curly” $$ ### @@@",
    "",
    " ",
]


def _read(name: str, limit_chars: int) -> list[str]:
    texts, seen = [], 0
    with gzip.open(CORPUS_DIR / name, "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            texts.append(text)
            seen += len(text)
            if seen >= limit_chars:
                break
    return texts


@pytest.fixture(scope="module")
def train_texts() -> list[str]:
    return _read("corpus_train.jsonl.gz", 300_000)


@pytest.fixture(scope="module")
def eval_texts() -> list[str]:
    return _read("corpus_val.jsonl.gz", 400_000) + EDGE_TEXTS


@pytest.fixture(scope="module")
def tok(train_texts) -> Tokenizer:
    return Tokenizer.train(train_texts, VOCAB)


def test_tiktoken_export_encodes_like_rustbpe(train_texts, eval_texts, tok):
    direct = rustbpe.Tokenizer()
    direct.train_from_iterator(iter(train_texts), VOCAB - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    assert direct.get_pattern() == tok.pattern == SPLIT_PATTERN
    assert {bytes(b): r for b, r in direct.get_mergeable_ranks()} == tok.mergeable_ranks
    ours = tok.encode(eval_texts)
    for text, ids in zip(eval_texts, ours):
        assert ids == direct.encode(text), text[:80]
        assert tok.decode(ids) == text
    assert sum(map(len, ours)) > 50_000  # really a few hundred KB of text


def test_vocabulary_layout(tok):
    assert tok.vocab_size == VOCAB
    assert sorted(tok.mergeable_ranks.values()) == list(range(VOCAB - len(SPECIAL_TOKENS)))
    for b in range(256):  # every single byte is a token
        assert bytes([b]) in tok.mergeable_ranks


def test_special_tokens_are_the_last_nine_in_order(tok):
    first = VOCAB - len(SPECIAL_TOKENS)
    assert [tok.encode_special(s) for s in SPECIAL_TOKENS] == list(range(first, VOCAB))
    assert tok.bos_token_id == first
    for s in SPECIAL_TOKENS:
        assert tok.decode([tok.encode_special(s)]) == s
    # Special-token strings in ordinary text are just text.
    ids = tok.encode("<|bos|>hello<|assistant_end|>")
    assert not set(ids) & set(range(first, VOCAB))
    assert tok.decode(ids) == "<|bos|>hello<|assistant_end|>"


def test_prepend_and_append(tok):
    body = tok.encode("hello world")
    assert tok.encode("hello world", prepend="<|bos|>", append=tok.encode_special("<|user_end|>")) == (
        [tok.bos_token_id] + body + [tok.encode_special("<|user_end|>")]
    )
    batch = tok.encode(["a b", "c"], prepend=tok.bos_token_id)
    assert batch == [[tok.bos_token_id] + tok.encode("a b"), [tok.bos_token_id] + tok.encode("c")]


def test_training_is_deterministic(train_texts, tok):
    again = Tokenizer.train(train_texts, VOCAB)
    assert again.mergeable_ranks == tok.mergeable_ranks
    assert again.sha256() == tok.sha256()
    smaller = Tokenizer.train(train_texts, 512)
    assert smaller.sha256() != tok.sha256()


def test_save_load_round_trip(tok, eval_texts, tmp_path):
    path = tok.save(tmp_path / "t")
    assert path == tmp_path / "t" / "tokenizer.json"
    loaded = Tokenizer.load(tmp_path / "t")
    assert loaded.sha256() == tok.sha256()
    assert loaded.mergeable_ranks == tok.mergeable_ranks and loaded.special_tokens == tok.special_tokens
    assert loaded.encode(eval_texts[:5]) == tok.encode(eval_texts[:5])
    tok.save(tmp_path / "u")
    assert (tmp_path / "u" / "tokenizer.json").read_bytes() == path.read_bytes()  # byte-stable file
    saved_bytes = torch.load(tmp_path / "t" / "token_bytes.pt", weights_only=True)
    assert torch.equal(saved_bytes, tok.token_bytes())
    assert not list((tmp_path / "t").glob("*.tmp"))


def test_load_rejects_other_special_tokens(tok, tmp_path):
    tok.save(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    data["special_tokens"] = data["special_tokens"][::-1]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="special tokens"):
        Tokenizer.load(tmp_path)


def test_token_bytes(tok):
    tb = tok.token_bytes()
    assert tb.dtype == torch.int32 and tb.shape == (VOCAB,)
    first_special = VOCAB - len(SPECIAL_TOKENS)
    assert tb[first_special:].tolist() == [0] * len(SPECIAL_TOKENS)
    # ORIG's count: the UTF-8 length of each token decoded on its own (issue 16 item 6)
    for token_id in range(first_special):
        assert tb[token_id].item() == len(tok.decode([token_id]).encode("utf-8"))
    assert (tb[:first_special] >= 1).all()
    # a lone UTF-8 continuation byte decodes to U+FFFD: 3 bytes, not its 1 raw byte
    assert tb[tok.mergeable_ranks[b"\x80"]].item() == 3
    # tokens that are whole UTF-8 characters count their raw bytes; an ASCII text its length
    text = "Hello, world! 12345"
    assert int(tb[tok.encode(text)].sum()) == len(text.encode("utf-8"))


def test_vocab_too_small_is_rejected(train_texts):
    with pytest.raises(ValueError, match="at least 265"):
        Tokenizer.train(train_texts[:1], 264)


def test_truncated_docs_caps_documents_and_total():
    docs = list(truncated_docs(["a" * 10, "b" * 10, "c" * 10, "d" * 10], max_chars=15, doc_cap=6))
    assert docs == ["a" * 6, "b" * 6, "c" * 6]


def test_truncated_docs_keeps_the_last_document_whole_and_stops_only_past_max_chars():
    # ORIG (issue 16 item 13): the document crossing max_chars is kept whole; exactly max_chars goes on
    docs = list(truncated_docs(["abcdefgh", "ijklmnop", "qrstuvwx", "yz"], max_chars=10, doc_cap=100))
    assert docs == ["abcdefgh", "ijklmnop"]
    docs = list(truncated_docs(["abcde", "fghij", "klmno", "pq"], max_chars=10, doc_cap=100))
    assert docs == ["abcde", "fghij", "klmno"]
    docs = list(truncated_docs(["abcdefgh", "ijklmnop", "qrstuvwx"], max_chars=10, doc_cap=3))
    assert docs == ["abc", "ijk", "qrs"]
