"""TokenLoader: batches independent of the process layout, fingerprints, exact resume, clear errors."""

from __future__ import annotations

import hashlib
import json
import random
from concurrent.futures import wait

import numpy as np
import pytest
import torch

from nanochat_core.dataloader import (
    TokenLoader, batch_fingerprint, enumerate_row_groups, flatten_with_bos, read_texts, row_hash, val_windows,
)
from nanochat_core.dataset import parquet_bytes
from nanochat_core.tokenizer import Tokenizer

SEQ = 16
ROWS = 8
WORDS = "the of and river stone light north wind quiet garden number seven eleven market paper bridge".split()


def _docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"Doc {seed}-{i}. " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for i in range(n)]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(_docs(200, 99), 300)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
    """Two train files, 2 docs per row group: 20 row groups in all."""
    d = tmp_path_factory.mktemp("shards")
    paths = []
    for i, n in enumerate((24, 16)):
        p = d / f"shard_{i:05d}.parquet"
        p.write_bytes(parquet_bytes(_docs(n, i), docs_per_row_group=2))
        paths.append(str(p))
    return paths


def _loader(files, tok, *, B: int, W: int = 1, rank: int = 0, rows: int = ROWS, threads: int = 1) -> TokenLoader:
    return TokenLoader(files, tok, seq_len=SEQ, rows_per_step=rows, device_batch_size=B, rank=rank, world_size=W,
                       prefetch_threads=threads)


def _global_batches(loaders: list[TokenLoader], steps: int) -> list[dict[int, tuple[list[int], int]]]:
    """Per optimizer step: global row -> (window tokens, row hash), gathered from every simulated rank."""
    out = []
    for _ in range(steps):
        rows: dict[int, tuple[list[int], int]] = {}
        for loader in loaders:
            for _ in range(loader.grad_accum):
                x, y, hashes = loader.next()
                assert x.dtype == torch.int64 and x.shape == (loader.B, SEQ) == y.shape
                assert torch.equal(x[:, 1:], y[:, :-1])
                for i, j in enumerate(loader.rows_of((loader.micro - 1) % loader.grad_accum)):
                    window = torch.cat([x[i], y[i, -1:]]).tolist()
                    assert row_hash(np.array(window)) == hashes[j]
                    rows[j] = (window, hashes[j])
        assert sorted(rows) == list(range(ROWS))
        out.append(rows)
    return out


def _fingerprints(batches) -> list[str]:
    return [batch_fingerprint([rows[j][1] for j in range(ROWS)]) for rows in batches]


def test_rows_do_not_depend_on_the_process_layout(files, tok):
    steps = 4
    one_accum = _global_batches([_loader(files, tok, B=4)], steps)
    two_ranks = _global_batches([_loader(files, tok, B=4, W=2, rank=r) for r in range(2)], steps)
    one_big = _global_batches([_loader(files, tok, B=8)], steps)
    four_ranks = _global_batches([_loader(files, tok, B=1, W=4, rank=r) for r in range(4)], steps)
    assert one_accum == two_ranks == one_big == four_ranks
    fps = _fingerprints(one_accum)
    assert fps == _fingerprints(two_ranks) == _fingerprints(one_big)
    assert len(set(fps)) == steps  # every step sees different data


def test_layout_bookkeeping(files, tok):
    a = _loader(files, tok, B=4)
    assert a.grad_accum == 2 and a.rows_of(0) == [0, 1, 2, 3] and a.rows_of(1) == [4, 5, 6, 7]
    r1 = _loader(files, tok, B=2, W=2, rank=1)
    assert r1.grad_accum == 2 and r1.my_rows() == [2, 3, 6, 7] and sorted(r1.streams) == [2, 3, 6, 7]


def test_row_stream_is_its_row_groups_tokenized_in_order(files, tok):
    """Row j reads row groups j, j+R, ... with BOS before every document, cut into consecutive windows."""
    loader = _loader(files, tok, B=8)
    groups = enumerate_row_groups(files)
    assert len(groups) == 20
    steps = 6
    windows = [loader.next()[0] for _ in range(steps)]  # inputs only; rebuild from the stream instead
    for j in (0, 5):
        expected = []
        for ref in groups[j::ROWS]:
            for doc in tok.encode(read_texts(ref), prepend=tok.bos_token_id):
                expected.extend(doc)
        while len(expected) < steps * (SEQ + 1):  # the stream wraps to its first group
            expected = expected + expected
        got = [windows[s][j].tolist() for s in range(steps)]
        for s in range(steps):
            start = s * (SEQ + 1)
            assert got[s] == expected[start : start + SEQ]
        assert got[0][0] == tok.bos_token_id


def test_state_and_restore_resume_mid_stream_exactly(files, tok):
    reference = _loader(files, tok, B=2, W=2, rank=1)
    straight = [reference.next() for _ in range(9)]
    first = _loader(files, tok, B=2, W=2, rank=1)
    for _ in range(5):  # stops between micro-steps of an optimizer step
        first.next()
    state = json.loads(json.dumps(first.state()))  # survives serialization (string keys)
    assert state["micro"] == 1
    resumed = _loader(files, tok, B=2, W=2, rank=1)
    resumed.restore(state)
    for x_ref, y_ref, h_ref in straight[5:]:
        x, y, h = resumed.next()
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref) and h == h_ref
    # A fresh loader that is not restored does not continue the stream (the test can tell).
    assert not torch.equal(_loader(files, tok, B=2, W=2, rank=1).next()[0], straight[5][0])


def test_streams_wrap_around_their_row_groups(files, tok):
    loader = _loader(files, tok, B=8)
    for _ in range(40):
        loader.next()
    assert max(s.cursor for s in loader.streams.values()) > len(enumerate_row_groups(files)) // ROWS


def test_too_few_row_groups_is_a_clear_error(files, tok):
    with pytest.raises(ValueError, match=r"20 row groups but a batch has 32 rows"):
        _loader(files, tok, B=4, rows=32)


def test_rows_must_divide_by_batch_times_world(files, tok):
    with pytest.raises(ValueError, match="must divide by device_batch_size"):
        _loader(files, tok, B=3)
    with pytest.raises(ValueError, match="must divide by device_batch_size"):
        _loader(files, tok, B=4, W=4)


def test_row_hash_and_fingerprint_are_stable():
    row = np.array([1, 2, 3, 65535], dtype=np.int32)
    digest = hashlib.sha256(np.array([1, 2, 3, 65535], dtype="<i8").tobytes()).digest()
    assert row_hash(row) == int.from_bytes(digest[:8], "little") >> 1
    assert 0 <= row_hash(row) < 2**63
    fp = batch_fingerprint([1, 2, 3])
    assert len(fp) == 16 and fp == batch_fingerprint([1, 2, 3]) != batch_fingerprint([2, 1, 3])


def test_val_windows(files, tok):
    a = val_windows(files, tok, seq_len=SEQ, num_rows=5)
    assert a.shape == (5, SEQ + 1) and a.dtype == torch.int64
    assert torch.equal(a, val_windows(files, tok, seq_len=SEQ, num_rows=5))
    assert a[0, 0].item() == tok.bos_token_id
    flat = [t for d in tok.encode(read_texts(enumerate_row_groups(files)[0]), prepend=tok.bos_token_id) for t in d]
    assert a.flatten().tolist()[: len(flat)] == flat[: 5 * (SEQ + 1)]
    capped = val_windows(files, tok, seq_len=SEQ, num_rows=10**6)  # as many as the split holds
    assert 5 < capped.shape[0] < 10**6
    with pytest.raises(ValueError, match="fewer than"):
        val_windows(files, tok, seq_len=10**7, num_rows=1)


# ---- speed without changing a token: background row-group prefetch, early batches, no np.fromiter ----


def _take(loader: TokenLoader, n: int, *, early: bool = False) -> list:
    out = []
    for _ in range(n):
        x, y, h = loader.next()
        out.append((x.tolist(), y.tolist(), h))
        if early:
            loader.prefetch()  # as the training loop does right after backward()
    return out


def test_prefetching_loader_gives_the_same_batches_as_inline_loading(files, tok):
    n = 50  # several wrap-arounds of every stream (each has 2-3 row groups)
    inline = _take(_loader(files, tok, B=2, W=2, rank=1, threads=0), n)
    assert _take(_loader(files, tok, B=2, W=2, rank=1), n) == inline
    assert _take(_loader(files, tok, B=2, W=2, rank=1, threads=2), n, early=True) == inline
    fps = [batch_fingerprint([h for _, _, hs in inline[i : i + 2] for h in hs.values()]) for i in range(0, n, 2)]
    early = _take(_loader(files, tok, B=2, W=2, rank=1), n, early=True)
    assert fps == [batch_fingerprint([h for _, _, hs in early[i : i + 2] for h in hs.values()]) for i in range(0, n, 2)]


def test_the_next_row_group_is_ready_before_the_stream_needs_it(files, tok):
    loader = _loader(files, tok, B=8)
    stream = loader.streams[0]
    loader.next()
    assert stream.cursor == 0 and stream._ahead[0] == 1
    stream._ahead[1].result()  # the background load has finished (the model's compute would cover it)
    before = stream.inline_loads
    while stream.cursor == 0:
        loader.next()
    assert stream.inline_loads == before  # the new row group came from the prefetch, no inline load
    inline = _loader(files, tok, B=8, threads=0)
    while inline.streams[0].cursor == 0:
        inline.next()
    assert inline.streams[0].inline_loads == 2  # without prefetch both row groups loaded inline


def test_state_after_an_early_batch_resumes_at_that_batch(files, tok):
    straight = _take(_loader(files, tok, B=2, W=2, rank=1, threads=0), 9)
    loader = _loader(files, tok, B=2, W=2, rank=1)
    _take(loader, 5)
    loader.prefetch()  # batch 5 is built but not yet taken: a checkpoint now must still begin at it
    state = json.loads(json.dumps(loader.state()))
    assert state["micro"] == 1
    resumed = _loader(files, tok, B=2, W=2, rank=1)
    resumed.restore(state)
    assert _take(resumed, 4) == straight[5:]
    assert _take(loader, 4) == straight[5:]  # and the loader that prefetched goes on unchanged


def test_flatten_with_bos_equals_the_token_by_token_concatenation():
    docs = [[5, 6, 7], [], [9], list(range(100, 400))]
    expected = np.array([t for d in docs for t in [1, *d]], dtype=np.int32)
    got = flatten_with_bos(docs, 1)
    assert got.dtype == np.int32 and np.array_equal(got, expected)
    assert flatten_with_bos([], 1).shape == (0,)


def test_close_cancels_queued_prefetches_and_the_loader_still_works(files, tok):
    straight = _take(_loader(files, tok, B=8, threads=0), 12)
    loader = _loader(files, tok, B=8)
    first = _take(loader, 2)
    loader.close()
    pending = [s._ahead[1] for s in loader.streams.values() if s._ahead is not None]
    wait([f for f in pending if not f.cancelled()], timeout=60)  # the row group being tokenized finishes
    assert all(f.done() for f in pending) and loader._executor is None
    assert first + _take(loader, 10) == straight  # cancelled prefetches are loaded inline, same tokens
