"""chat_cli: UTF-8-safe streaming, conversation memory, clear/quit, token limit, one-shot CLI via nanobench."""

from __future__ import annotations

import io

import pytest

from chat_stage_fixtures import save_chat_run, tiny_chat_model
from bench.cli import main as nanobench
from nanochat_core.chat_cli import ChatSession, TokenTextStream, chat_loop, load_chat_model
from nanochat_core.engine import Engine


@pytest.fixture(scope="module")
def engine():
    model, tok = tiny_chat_model()
    return Engine(model, tok)


def test_token_text_stream_never_splits_a_character(engine):
    tok = engine.tokenizer
    text = "Héllo wörld, naïve 日本語 😀🎉 ✓"
    ids = tok.encode(text)
    assert len(ids) > len(text) // 4
    stream = TokenTextStream(tok)
    pieces = [stream.push(t) for t in ids] + [stream.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    # the emoji spans several byte tokens: some pushes must have been held back
    assert "" in pieces[:-1]


def test_session_remembers_the_conversation_and_clears(engine):
    tok = engine.tokenizer
    session = ChatSession(engine, max_tokens=8, seed=1)
    end, start = tok.encode_special("<|assistant_end|>"), tok.encode_special("<|assistant_start|>")
    first = "".join(session.reply("Hello there"))
    after_first = list(session.tokens)
    assert after_first[0] == tok.bos_token_id and after_first[-1] == end
    assert tok.decode(after_first).count("Hello there") == 1
    "".join(session.reply("What is 12 + 7?"))
    assert session.tokens[: len(after_first)] == after_first  # memory: the first exchange stays
    assert session.tokens.count(start) == 2 and session.tokens[-1] == end
    assert isinstance(first, str)
    session.clear()
    assert session.tokens == [tok.bos_token_id]


def test_token_limit_closes_the_reply(engine):
    session = ChatSession(engine, max_tokens=3, temperature=1.0, seed=3)
    list(session.reply("Hello"))
    assistant_start = engine.tokenizer.encode_special("<|assistant_start|>")
    reply = session.tokens[session.tokens.index(assistant_start) + 1 :]
    assert len(reply) <= 4 and reply[-1] == engine.tokenizer.encode_special("<|assistant_end|>")


def test_same_seed_same_reply(engine):
    a = "".join(ChatSession(engine, max_tokens=12, seed=5).reply("Hello"))
    b = "".join(ChatSession(engine, max_tokens=12, seed=5).reply("Hello"))
    assert a == b


def test_chat_loop_handles_clear_and_quit(engine):
    lines = iter(["Hello", "clear", "", "What is 12 + 7?", "quit", "never read"])
    out = io.StringIO()
    session = ChatSession(engine, max_tokens=6, seed=2)
    chat_loop(session, read=lambda _prompt: next(lines), out=out)
    text = out.getvalue()
    assert text.count("Assistant: ") == 2 and "(conversation cleared)" in text
    decoded = engine.tokenizer.decode(session.tokens)
    assert "What is 12 + 7?" in decoded and "Hello" not in decoded.split("<|user_start|>")[1]
    assert next(lines) == "never read"


def test_chat_loop_ends_on_end_of_input(engine):
    def eof(_prompt):
        raise EOFError

    chat_loop(ChatSession(engine), read=eof, out=io.StringIO())


def test_nanobench_chat_one_shot(tmp_path, capsys):
    run = save_chat_run(tmp_path / "run", stages=("sft", "mid"))
    assert nanobench(["chat", "--run-dir", str(run), "-p", "Hello", "--seed", "4", "--max-tokens", "10"]) == 0
    first = capsys.readouterr().out
    assert nanobench(["chat", "--run-dir", str(run), "--source", "mid", "-p", "Hello", "--seed", "4", "--max-tokens", "10"]) == 0
    assert capsys.readouterr().out == first  # same weights, same seed


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    run = save_chat_run(tmp_path / "run", stages=("mid",))
    assert nanobench(["chat", "--run-dir", str(run), "-p", "hi"]) == 1
    assert "no sft checkpoint" in capsys.readouterr().err and "available: mid" in str(
        pytest.raises(FileNotFoundError, load_chat_model, run / "artifacts", "sft").value
    )
