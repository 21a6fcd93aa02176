"""conversation_loader: SFT batch masks per role and tool part, padding, rank-strided order, coverage, resume."""

from __future__ import annotations

import pytest
import torch

from nanochat_core.chat_format import render_conversation
from nanochat_core.conversation_loader import ConversationBatches, ConversationTokenStream, collate_conversations, rank_indices
from nanochat_core.tasks.mixtures import sft_train_mixture
from nanochat_core.tokenizer import Tokenizer

TEXTS = ["Hello there, message number 12 says hi. What is 3 times 4? It is 12. System: be nice."] * 30


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    torch.set_num_threads(1)
    return Tokenizer.train(TEXTS, 320)


class Numbered:
    """A dataset whose conversation i says "message i"."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def get_example(self, index: int) -> dict:
        return {"messages": [{"role": "user", "content": f"message {index}"}, {"role": "assistant", "content": f"reply {index}"}]}


def sp(tok: Tokenizer, name: str) -> int:
    return tok.encode_special(f"<|{name}|>")


def test_sft_batch_targets_follow_every_role_and_tool_part(tok):
    conv = {"messages": [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "What is 3 times 4?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "It is "},
            {"type": "python", "text": "3*4"},
            {"type": "python_output", "text": "12"},
            {"type": "text", "text": " so 12."},
        ]},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello there"},
    ]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "12"}]}
    rendered = [render_conversation(tok, conv), render_conversation(tok, short)]
    pad = sp(tok, "assistant_end")
    x, y = collate_conversations(rendered, pad)
    ids, _ = rendered[0]
    assert x.shape == y.shape == (2, len(ids) - 1)
    assert x[0].tolist() == ids[:-1]
    # Expected target of each position: the next token when it is something the assistant produces.
    trained_kinds = {"text", "python_start", "python", "python_end", "assistant_end"}
    kinds = []  # kind of every token of the long conversation, in order
    kinds += ["bos", "user_start"] + ["user"] * len(tok.encode("be nice\n\nWhat is 3 times 4?")) + ["user_end", "assistant_start"]
    kinds += ["text"] * len(tok.encode("It is "))
    kinds += ["python_start"] + ["python"] * len(tok.encode("3*4")) + ["python_end"]
    kinds += ["output_start"] + ["output"] * len(tok.encode("12")) + ["output_end"]
    kinds += ["text"] * len(tok.encode(" so 12.")) + ["assistant_end"]
    kinds += ["user_start"] + ["user"] * len(tok.encode("hi")) + ["user_end", "assistant_start"]
    kinds += ["text"] * len(tok.encode("Hello there")) + ["assistant_end"]
    assert len(kinds) == len(ids)
    for t in range(len(ids) - 1):
        expected = ids[t + 1] if kinds[t + 1] in trained_kinds else -1
        assert y[0, t].item() == expected, (t, kinds[t + 1])
    # The short row: padded inputs with <|assistant_end|>, padding targets ignored.
    short_ids, short_mask = rendered[1]
    n = len(short_ids) - 1
    assert x[1, n:].eq(pad).all() and y[1, n:].eq(-1).all()
    assert y[1, :n].tolist() == [tok_id if m else -1 for tok_id, m in zip(short_ids[1:], short_mask[1:])]
    assert (y[1, :n] != -1).sum().item() == len(tok.encode("12")) + 1  # reply + <|assistant_end|>


def test_conversation_batches_walk_rank_strided_over_epochs(tok):
    data = Numbered(7)
    loaders = [ConversationBatches(data, tok, batch_size=2, rank=r, world_size=2) for r in range(2)]
    assert list(rank_indices(7, 0, 2)) == [0, 2, 4, 6] and list(rank_indices(7, 1, 2)) == [1, 3, 5]
    seen = [[loaders[r].index_at(p) for p in range(6)] for r in range(2)]
    assert seen[0] == [0, 2, 4, 6, 0, 2] and seen[1] == [1, 3, 5, 1, 3, 5]
    first = loaders[1].next_rendered()
    assert [tok.decode(ids) for ids, _ in first][0].count("message 1") == 1
    assert loaders[1].consumed == 2
    loaders[1].next()
    assert loaders[1].epoch == 1  # 4 of 3 conversations taken: second epoch started


def test_conversation_batches_resume_gives_identical_batches(tok):
    data = Numbered(9)
    a = ConversationBatches(data, tok, batch_size=3)
    a.next()
    state = a.state()
    expected = [a.next() for _ in range(3)]
    b = ConversationBatches(data, tok, batch_size=3)
    b.restore(state)
    for (xa, ya), (xb, yb) in zip(expected, (b.next() for _ in range(3))):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_token_stream_is_flat_rank_strided_and_unmasked(tok):
    data = Numbered(5)
    streams = [ConversationTokenStream(data, tok, batch_size=2, seq_len=8, rank=r, world_size=2) for r in range(2)]
    x, y = streams[0].next()
    assert x.shape == y.shape == (2, 8)
    flat = torch.cat([x.reshape(-1), y.reshape(-1)[-1:]])
    assert torch.equal(x.reshape(-1)[1:], y.reshape(-1)[:-1])  # targets are inputs shifted by one
    assert (y >= 0).all()  # midtraining trains on every token (the render mask is ignored)
    expected = []
    for i in (0, 2, 4):
        expected += render_conversation(tok, data.get_example(i), 8)[0]
    assert flat.tolist() == expected[: len(flat)]
    # Ranks together visit every conversation exactly once per pass.
    visited = []
    for s in streams:
        s2 = ConversationTokenStream(data, tok, batch_size=1, seq_len=4, rank=s.rank, world_size=2)
        while not s2.exhausted:
            visited.append(s2.cursor)
            s2._render_next()
    assert sorted(visited) == list(range(5))


def test_token_stream_exhausts_after_one_pass_and_resumes_exactly(tok):
    data = Numbered(6)
    s = ConversationTokenStream(data, tok, batch_size=1, seq_len=16)
    batches = 0
    while not s.exhausted:
        s.next()
        batches += 1
    assert batches >= 1 and s.progress >= 1.0
    s.next()
    state = s.state()
    expected = [s.next() for _ in range(4)]
    r = ConversationTokenStream(data, tok, batch_size=1, seq_len=16)
    r.restore(state)
    for (xa, ya), (xb, yb) in zip(expected, (r.next() for _ in range(4))):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_sft_mixture_order_is_deterministic_and_the_loader_covers_every_task(tok):
    a, b = sft_train_mixture("shipped", limit=3), sft_train_mixture("shipped", limit=3)
    assert a.index_map == b.index_map
    tasks_seen = set()
    for rank in range(2):
        loader = ConversationBatches(a, tok, batch_size=1, rank=rank, world_size=2)
        for p in range(len(loader.indices)):
            tasks_seen.add(a.source_of(loader.index_at(p))[0])
    assert tasks_seen == set(range(len(a.tasks)))
