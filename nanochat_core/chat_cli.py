"""Terminal chat with a trained checkpoint (spec section 11, `chat_cli`).

The conversation is kept as one token list starting with `<|bos|>`; each user turn appends
`<|user_start|> text <|user_end|> <|assistant_start|>`, the reply is sampled with the Engine and
streamed as text (never splitting a multi-byte UTF-8 character), and `<|assistant_end|>` closes it
(appended when the reply stopped on the token limit). Commands: `clear` starts over, `quit`/`exit`
leave. `-p PROMPT` answers one prompt and exits. The calculator tool is the Engine's AST evaluator.

Also home to what the web server shares: :func:`load_chat_model`, :class:`TokenTextStream`,
:func:`reply_pieces`.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from nanochat_core.checkpoint import checkpoint_dir, latest_step, load_model
from nanochat_core.common import pick_device
from nanochat_core.engine import Engine
from nanochat_core.model import GPT
from nanochat_core.tokenizer import SPECIAL_TOKENS, Tokenizer

CHAT_SOURCES = ("sft", "mid", "rl", "base")
DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_K = 50
DEFAULT_MAX_TOKENS = 256


def load_chat_model(artifacts_dir: str | os.PathLike[str], source: str = "sft", device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, dict]:
    """(model in eval mode, tokenizer, checkpoint meta) of a run's `source` checkpoint."""
    if source not in CHAT_SOURCES:
        raise ValueError(f"unknown checkpoint source {source!r}; expected one of {CHAT_SOURCES}")
    artifacts_dir = Path(artifacts_dir)
    directory = checkpoint_dir(artifacts_dir, source)
    if latest_step(directory) is None:
        present = [s for s in CHAT_SOURCES if latest_step(checkpoint_dir(artifacts_dir, s)) is not None]
        raise FileNotFoundError(
            f"no {source} checkpoint in {directory}; available: {', '.join(present) if present else 'none'}"
        )
    model, meta = load_model(directory, device)
    return model, Tokenizer.load(artifacts_dir / "tokenizer"), meta


SMOKE_PRESETS = ("smoke", "test")
SMOKE_WARNING = (
    "This checkpoint comes from a smoke run (minutes of training on a small machine): it is meant to "
    "exercise the pipeline, and its replies are nonsense by design."
)


def describe_run(run_dir: str | os.PathLike[str], source: str, meta: dict) -> dict:
    """What a chat front end serves: run name, checkpoint (source, step), preset and a warning for
    smoke-scale models. The preset comes from the run's launch.json (or config.json) when present."""
    run_dir = Path(run_dir)
    preset = None
    for name in ("launch.json", "config.json"):
        try:
            data = json.loads((run_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("preset"), str):
            preset = data["preset"]
            break
    return {
        "run": run_dir.resolve().name,
        "source": source,
        "step": meta.get("step"),
        "preset": preset,
        "warning": SMOKE_WARNING if preset in SMOKE_PRESETS else None,
    }


def run_banner(info: dict) -> str:
    """One or two lines naming the run and checkpoint (and the smoke warning)."""
    preset = f", preset {info['preset']}" if info.get("preset") else ""
    line = f"run {info['run']}: {info['source']} checkpoint, step {info['step']}{preset}"
    return line + (f"\nwarning: {info['warning']}" if info.get("warning") else "")


class TokenTextStream:
    """Turns tokens into text pieces, holding tokens back while their decode ends in an incomplete
    UTF-8 character (U+FFFD)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.pending: list[int] = []

    def push(self, token: int) -> str:
        self.pending.append(token)
        text = self.tokenizer.decode(self.pending)
        if text.endswith("\ufffd"):
            return ""
        self.pending.clear()
        return text

    def flush(self) -> str:
        text = self.tokenizer.decode(self.pending) if self.pending else ""
        self.pending.clear()
        return text


@dataclass(frozen=True)
class ReplyPart:
    """One piece of a reply: ``text`` (what the model says), ``tool_call`` (the calculator expression it
    wrote between ``<|python_start|>`` and ``<|python_end|>``) or ``tool_result`` (what the engine fed
    back between ``<|output_start|>`` and ``<|output_end|>``). Special tokens never appear in ``text``."""

    kind: str
    text: str


def render_part(part: ReplyPart) -> str:
    """Plain-text rendering of a part for a terminal: tool calls and results in brackets."""
    if part.kind == "tool_call":
        return f"[calculator: {part.text}]"
    if part.kind == "tool_result":
        return f" [= {part.text}]"
    return part.text


def reply_parts(
    engine: Engine,
    prompt: list[int],
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int | None = DEFAULT_TOP_K,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    seed: int = 42,
    generated: list[int] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[ReplyPart]:
    """The parts of one sampled reply to `prompt` (which ends with `<|assistant_start|>`).

    Every emitted token (tool-forced ones included, the terminal one not) is appended to
    `generated` when given. `should_stop()` returning True ends the reply early. A tool call cut
    off by the token limit is still reported (as far as it got).
    """
    tok = engine.tokenizer
    special_ids = {tok.encode_special(name) for name in SPECIAL_TOKENS}
    opens = {engine.python_start: "tool_call", engine.output_start: "tool_result"}
    closes = {engine.python_end: "tool_call", engine.output_end: "tool_result"}
    stream = TokenTextStream(tok)
    inside: str | None = None  # the tool part being collected, if any
    collected: list[int] = []
    steps = engine.generate(prompt, num_samples=1, max_tokens=max_tokens, temperature=temperature, top_k=top_k, seed=seed)
    for column, _ in steps:
        token = column[0]
        if token in (engine.assistant_end, engine.bos):
            break
        if generated is not None:
            generated.append(token)
        if token in opens:
            if tail := stream.flush():
                yield ReplyPart("text", tail)
            inside, collected = opens[token], []
        elif token in closes and inside == closes[token]:
            yield ReplyPart(inside, tok.decode(collected).strip())
            inside, collected = None, []
        elif token in special_ids:
            pass  # any other special token is structure, never text
        elif inside is not None:
            collected.append(token)
        elif text := stream.push(token):
            yield ReplyPart("text", text)
        if should_stop is not None and should_stop():
            break
    if inside is not None:
        yield ReplyPart(inside, tok.decode(collected).strip())
    elif tail := stream.flush():
        yield ReplyPart("text", tail)


def reply_pieces(engine: Engine, prompt: list[int], **kwargs) -> Iterator[str]:
    """Text pieces of one sampled reply (tool calls rendered by :func:`render_part`); see :func:`reply_parts`."""
    for part in reply_parts(engine, prompt, **kwargs):
        yield render_part(part)


class ChatSession:
    """A multi-turn conversation with memory, as tokens."""

    def __init__(
        self,
        engine: Engine,
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        top_k: int | None = DEFAULT_TOP_K,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        seed: int | None = None,
    ) -> None:
        self.engine, self.tokenizer = engine, engine.tokenizer
        self.temperature, self.top_k, self.max_tokens = temperature, top_k, max_tokens
        self.rng = random.Random(seed)  # per-reply seeds: reproducible with a seed, varied without
        self.tokens: list[int] = []
        self.clear()

    def clear(self) -> None:
        self.tokens = [self.tokenizer.bos_token_id]

    def reply(self, user_text: str) -> Iterator[str]:
        """Add a user turn and stream the assistant's reply as text (tool calls rendered in brackets)."""
        for part in self.reply_parts(user_text):
            yield render_part(part)

    def reply_parts(self, user_text: str) -> Iterator[ReplyPart]:
        """Add a user turn and stream the assistant's reply as parts; the reply joins the conversation."""
        special = self.tokenizer.encode_special
        self.tokens += [special("<|user_start|>"), *self.tokenizer.encode(user_text), special("<|user_end|>"), special("<|assistant_start|>")]
        generated: list[int] = []
        try:
            yield from reply_parts(
                self.engine, self.tokens, temperature=self.temperature, top_k=self.top_k,
                max_tokens=self.max_tokens, seed=self.rng.randrange(2**31), generated=generated,
            )
        finally:
            self.tokens += generated + [special("<|assistant_end|>")]


def chat_loop(
    session: ChatSession, *, read: Callable[[str], str] = input, out: TextIO | None = None, echo_input: bool = False
) -> None:
    """Read user lines until `quit`/`exit` (or end of input), streaming each reply to `out`.

    `echo_input` writes each line read after its prompt: with piped input nothing else shows what
    was asked (run_chat turns it on when stdin is not a terminal)."""
    out = sys.stdout if out is None else out
    out.write("nanochat: type a message; 'clear' starts over, 'quit' or 'exit' leaves.\n")
    while True:
        try:
            raw = read("\nUser: ")
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return
        line = raw.strip()
        if echo_input:
            out.write(raw.rstrip("\n") + "\n")
        if line.lower() in ("quit", "exit"):
            return
        if line.lower() == "clear":
            session.clear()
            out.write("(conversation cleared)\n")
            continue
        if not line:
            continue
        out.write("\nAssistant: ")
        try:
            for piece in session.reply(line):
                out.write(piece)
                out.flush()
        except ValueError as err:  # the conversation no longer fits the model's context
            out.write(f"\n[{err}; type 'clear' to start over]")
        out.write("\n")


def run_chat(
    run_dir: str | os.PathLike[str],
    *,
    source: str = "sft",
    prompt: str | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int = DEFAULT_TOP_K,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    device: str = "auto",
    seed: int | None = None,
    read: Callable[[str], str] = input,
    out: TextIO | None = None,
    echo_input: bool | None = None,
) -> int:
    """Chat with `run_dir/artifacts/checkpoints/<source>`; one-shot when `prompt` is given.
    `echo_input` None: echo the lines read when stdin is not a terminal (piped input)."""
    out = sys.stdout if out is None else out  # looked up at call time (tests and callers may swap it)
    if not 0 <= temperature <= 2 or not 1 <= top_k <= 200 or max_tokens < 1:
        raise ValueError("temperature must be in [0, 2], top-k in [1, 200] and max tokens >= 1")
    model, tok, meta = load_chat_model(Path(run_dir) / "artifacts", source, pick_device(device))
    info = describe_run(run_dir, source, meta)
    session = ChatSession(Engine(model, tok), temperature=temperature, top_k=top_k, max_tokens=max_tokens, seed=seed)
    if prompt is not None:
        if info["warning"]:
            print(f"warning: {info['warning']}", file=sys.stderr)
        for piece in session.reply(prompt):
            out.write(piece)
            out.flush()
        out.write("\n")
        return 0
    out.write(run_banner(info) + "\n")
    chat_loop(session, read=read, out=out, echo_input=echo_input if echo_input is not None else not _stdin_is_terminal())
    return 0


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False
