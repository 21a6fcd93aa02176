"""Conversation -> token ids + loss mask (spec section 2, "Chat rendering").

A conversation is a dict with a ``"messages"`` list (a bare list of messages is accepted too).
Messages are ``{"role": "user"|"assistant", "content": ...}`` alternating user, assistant, user, ...
An optional leading ``"system"`` message is folded into the first user message (blank line between).
User content is a string. Assistant content is a string or a list of parts
``{"type": "text"|"python"|"python_output", "text": str}``.

Token stream: ``<|bos|>``, then ``<|user_start|> text <|user_end|>`` per user message and
``<|assistant_start|> ... <|assistant_end|>`` per assistant message; python parts are wrapped in
``<|python_start|>/<|python_end|>``, tool output in ``<|output_start|>/<|output_end|>``.
The mask is 1 exactly on what the model is trained to produce: assistant text, python parts with
their delimiters and ``<|assistant_end|>``; everything else (BOS, user turns, ``<|assistant_start|>``,
tool output with its delimiters) is 0.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

Conversation = Mapping[str, Any] | Sequence[Mapping[str, Any]]

MAX_TOKENS = 2048
PART_TYPES = ("text", "python", "python_output")


def conversation_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """The validated message list: system merged into the first user turn, roles alternating.

    Raises ``ValueError`` naming the first problem (wrong role order, bad content type, unknown part).
    """
    raw = conversation["messages"] if isinstance(conversation, Mapping) else conversation
    messages = [dict(m) for m in raw]
    if messages and messages[0].get("role") == "system":
        if len(messages) < 2 or messages[1].get("role") != "user":
            raise ValueError("a system message must be followed by a user message")
        system, first = messages[0], messages[1]
        if not isinstance(system.get("content"), str) or not isinstance(first.get("content"), str):
            raise ValueError("system and first user message must have string content to be merged")
        messages = [{**first, "content": system["content"] + "\n\n" + first["content"]}] + messages[2:]
    if not messages:
        raise ValueError("a conversation needs at least one message")
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        role = message.get("role")
        if role != expected:
            raise ValueError(f"message {i} has role {role!r}, expected {expected!r} (roles must alternate user/assistant)")
        _check_content(i, role, message.get("content"))
    return messages


def _check_content(i: int, role: str, content: Any) -> None:
    if isinstance(content, str):
        return
    if role == "user" or not isinstance(content, list):
        raise ValueError(f"message {i} ({role}) content must be a string{'' if role == 'user' else ' or a list of parts'}")
    for j, part in enumerate(content):
        if not isinstance(part, Mapping) or part.get("type") not in PART_TYPES or not isinstance(part.get("text"), str):
            raise ValueError(f"message {i} part {j} must be {{'type': one of {PART_TYPES}, 'text': str}}, got {part!r}")


def render_conversation(tokenizer, conversation: Conversation, max_tokens: int = MAX_TOKENS) -> tuple[list[int], list[int]]:
    """Token ids and the parallel 0/1 loss mask of a whole conversation, cut to ``max_tokens``."""
    messages = conversation_messages(conversation)
    special = tokenizer.encode_special
    ids: list[int] = [tokenizer.bos_token_id]
    mask: list[int] = [0]

    def add(tokens: list[int], flag: int) -> None:
        ids.extend(tokens)
        mask.extend([flag] * len(tokens))

    for message in messages:
        content = message["content"]
        if message["role"] == "user":
            add([special("<|user_start|>")], 0)
            add(tokenizer.encode(content), 0)
            add([special("<|user_end|>")], 0)
            continue
        add([special("<|assistant_start|>")], 0)
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts:
            kind, text = part["type"], part["text"]
            if kind == "text":
                add(tokenizer.encode(text), 1)
            elif kind == "python":
                add([special("<|python_start|>")] + tokenizer.encode(text) + [special("<|python_end|>")], 1)
            else:  # python_output: produced by the tool, never trained on
                add([special("<|output_start|>")] + tokenizer.encode(text) + [special("<|output_end|>")], 0)
        add([special("<|assistant_end|>")], 1)
    return ids[:max_tokens], mask[:max_tokens]


def render_for_completion(tokenizer, conversation: Conversation, max_tokens: int = MAX_TOKENS) -> list[int]:
    """The prompt for sampling: drop a final assistant message, then append ``<|assistant_start|>``."""
    messages = conversation_messages(conversation)
    if messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    ids, _ = render_conversation(tokenizer, {"messages": messages}, max_tokens=max_tokens)
    return ids + [tokenizer.encode_special("<|assistant_start|>")]
