"""chat_format: token layout and loss mask of every message role and tool part, validation, truncation."""

from __future__ import annotations

import pytest

from nanochat_core.chat_format import conversation_messages, render_conversation, render_for_completion
from nanochat_core.tokenizer import Tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog. Hello there, how are you today?",
    "What is 12 times 7? It is 84. Python code: print(12*7) and the answer is 84.",
    "You are a helpful assistant. Count the letters in strawberry, please.",
] * 20


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(TEXTS, 400)


def sp(tok: Tokenizer, name: str) -> int:
    return tok.encode_special(f"<|{name}|>")


def test_string_assistant_layout_and_mask(tok):
    conv = {"messages": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi, how are you?"}]}
    ids, mask = render_conversation(tok, conv)
    user, reply = tok.encode("Hello there"), tok.encode("Hi, how are you?")
    expected = (
        [tok.bos_token_id, sp(tok, "user_start")] + user + [sp(tok, "user_end"), sp(tok, "assistant_start")] + reply + [sp(tok, "assistant_end")]
    )
    assert ids == expected
    assert mask == [0, 0] + [0] * len(user) + [0, 0] + [1] * len(reply) + [1]


def test_tool_parts_mask(tok):
    parts = [
        {"type": "text", "text": "It is "},
        {"type": "python", "text": "12*7"},
        {"type": "python_output", "text": "84"},
        {"type": "text", "text": " so 84."},
    ]
    conv = [{"role": "user", "content": "What is 12 times 7?"}, {"role": "assistant", "content": parts}]
    ids, mask = render_conversation(tok, conv)
    q = tok.encode("What is 12 times 7?")
    t1, py, out, t2 = tok.encode("It is "), tok.encode("12*7"), tok.encode("84"), tok.encode(" so 84.")
    expected_ids = (
        [tok.bos_token_id, sp(tok, "user_start"), *q, sp(tok, "user_end"), sp(tok, "assistant_start")]
        + t1
        + [sp(tok, "python_start"), *py, sp(tok, "python_end")]
        + [sp(tok, "output_start"), *out, sp(tok, "output_end")]
        + t2
        + [sp(tok, "assistant_end")]
    )
    expected_mask = (
        [0] * (3 + len(q) + 1)
        + [1] * len(t1)
        + [1] * (len(py) + 2)
        + [0] * (len(out) + 2)
        + [1] * len(t2)
        + [1]
    )
    assert ids == expected_ids
    assert mask == expected_mask


def test_multi_turn_masks_every_user_turn(tok):
    conv = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
        {"role": "assistant", "content": "four"},
    ]
    ids, mask = render_conversation(tok, conv)
    trained = [i for i, m in zip(ids, mask) if m]
    assert trained == tok.encode("two") + [sp(tok, "assistant_end")] + tok.encode("four") + [sp(tok, "assistant_end")]
    assert ids.count(sp(tok, "user_start")) == 2 and ids.count(sp(tok, "assistant_start")) == 2


def test_system_message_merged_into_first_user(tok):
    with_system = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"},
    ]
    merged = [{"role": "user", "content": "Be brief.\n\nHello"}, {"role": "assistant", "content": "Hi"}]
    assert render_conversation(tok, with_system) == render_conversation(tok, merged)
    assert conversation_messages(with_system)[0]["content"] == "Be brief.\n\nHello"


def test_truncation_is_a_prefix(tok):
    conv = [{"role": "user", "content": "Hello there " * 5}, {"role": "assistant", "content": "how are you " * 5}]
    full_ids, full_mask = render_conversation(tok, conv)
    ids, mask = render_conversation(tok, conv, max_tokens=10)
    assert len(full_ids) > 10
    assert ids == full_ids[:10] and mask == full_mask[:10]


@pytest.mark.parametrize(
    "messages, match",
    [
        ([{"role": "assistant", "content": "hi"}], "alternate"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "assistant", "content": "c"}], "alternate"),
        ([{"role": "system", "content": "s"}], "system"),
        ([{"role": "user", "content": ["x"]}], "string"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"type": "shell", "text": "ls"}]}], "part 0"),
        ([], "at least one"),
    ],
)
def test_invalid_conversations_raise(tok, messages, match):
    with pytest.raises(ValueError, match=match):
        render_conversation(tok, messages)


def test_render_for_completion(tok):
    conv = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]
    prompt = render_for_completion(tok, conv)
    ids, _ = render_conversation(tok, conv[:1])
    assert prompt == ids + [sp(tok, "assistant_start")]
    assert render_for_completion(tok, conv[:1]) == prompt  # a conversation ending on the user turn
