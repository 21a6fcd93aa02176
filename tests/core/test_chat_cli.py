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


# ---- issue 18 item 9: tool calls rendered, piped input echoed, run named, smoke warned ------------------

def test_tool_calls_are_rendered_never_raw():
    from tool_call_fixtures import tool_call_engine

    from nanochat_core.chat_cli import ReplyPart

    engine, answer = tool_call_engine("12+7", " so it is 19")
    session = ChatSession(engine, max_tokens=64, seed=0)
    parts = list(session.reply_parts("What is 12 + 7?"))
    assert parts[0] == ReplyPart("tool_call", "12+7") and parts[1] == ReplyPart("tool_result", answer)
    assert "".join(p.text for p in parts[2:] if p.kind == "text") == " so it is 19"
    # the conversation keeps the real tokens (the model sees its own tool use next turn) ...
    assert "<|python_start|>12+7<|python_end|><|output_start|>19<|output_end|>" in engine.tokenizer.decode(session.tokens)
    # ... while the terminal shows a readable call and result, and no special token
    shown = "".join(session.reply("again"))
    assert shown == "[calculator: 12+7] [= 19] so it is 19"
    assert "<|" not in shown


def test_piped_input_is_echoed(engine):
    lines = iter(["Hello there\n", "quit\n"])
    out = io.StringIO()
    chat_loop(ChatSession(engine, max_tokens=4, seed=2), read=lambda prompt: (out.write(prompt), next(lines))[1], out=out, echo_input=True)
    assert "User: Hello there\n" in out.getvalue()
    quiet = io.StringIO()
    lines = iter(["Hello there\n", "quit\n"])
    chat_loop(ChatSession(engine, max_tokens=4, seed=2), read=lambda prompt: (quiet.write(prompt), next(lines))[1], out=quiet)
    assert "Hello there" not in quiet.getvalue()  # a terminal already shows what was typed


def test_nanobench_chat_with_piped_stdin_echoes_and_names_the_run(tmp_path, monkeypatch, capsys):
    import json

    run = save_chat_run(tmp_path / "20260101T000000Z-smoke-abc123")
    (run / "launch.json").write_text(json.dumps({"preset": "smoke"}))
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 12 + 7?\nquit\n"))  # piped: not a terminal
    assert nanobench(["chat", "--run-dir", str(run), "--max-tokens", "4", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "User: What is 12 + 7?\n" in out
    assert "run 20260101T000000Z-smoke-abc123: sft checkpoint, step 1, preset smoke" in out
    assert "warning: " in out and "nonsense" in out


@pytest.mark.parametrize("flag", [["--top-k", "9" * 5000], ["--temperature", "nan"], ["--temperature", "inf"], ["--max-tokens", "0"]])
def test_out_of_range_chat_flags_are_refused(tmp_path, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        nanobench(["chat", "--run-dir", str(tmp_path), *flag])
    assert exc.value.code == 2
    assert flag[0] in capsys.readouterr().err
