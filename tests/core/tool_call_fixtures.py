"""A real Engine over a model steered to call the calculator: the tiny chat model whose last-position
logits are overridden to follow a script, so the Engine itself parses the call, evaluates it with the
calculator and force-feeds the result (nothing about the tool path is faked)."""

from __future__ import annotations

import torch

from chat_stage_fixtures import tiny_chat_model
from nanochat_core.engine import Engine


class ScriptedModel(torch.nn.Module):
    """Wraps a GPT; call k after the prefill makes token `script[k]` overwhelmingly likely."""

    def __init__(self, inner: torch.nn.Module, script: list[int]) -> None:
        super().__init__()
        self.inner, self.script = inner, script
        self.config = inner.config
        self.cos = inner.cos
        self.calls = 0

    def forward(self, ids: torch.Tensor, kv_cache=None) -> torch.Tensor:
        if ids.size(1) > 1:
            self.calls = 0  # a new prefill: a new reply starts the script again
        logits = self.inner(ids, kv_cache=kv_cache).clone()
        position = min(self.calls, len(self.script) - 1)
        self.calls += 1
        logits[:, -1, :] = -1e4
        logits[:, -1, self.script[position]] = 1e4
        return logits


def tool_call_engine(expression: str = "12+7", after: str = " so it is 19") -> tuple[Engine, str]:
    """(Engine whose model writes `<|python_start|>expression<|python_end|>`, then, after the
    calculator's forced output, `after` and `<|assistant_end|>`; the calculator's answer)."""
    model, tok = tiny_chat_model(seq_len=256)
    special = tok.encode_special
    from nanochat_core.calculator import evaluate

    answer = evaluate(expression)
    assert answer is not None, expression
    script = [
        special("<|python_start|>"), *tok.encode(expression), special("<|python_end|>"),
        special("<|output_start|>"), *tok.encode(answer), special("<|output_end|>"),
        *tok.encode(after), special("<|assistant_end|>"),
    ]
    return Engine(ScriptedModel(model, script), tok), answer


class SlowModel(torch.nn.Module):
    """Wraps a GPT, sleeps `delay_s` per forward call and never ends a reply early (the tokens in
    `banned` are made impossible): keeps a request in flight long enough to test the next ones."""

    def __init__(self, inner: torch.nn.Module, delay_s: float, banned: list[int]) -> None:
        super().__init__()
        self.inner, self.delay_s, self.banned = inner, delay_s, banned
        self.config = inner.config
        self.cos = inner.cos

    def forward(self, ids: torch.Tensor, kv_cache=None) -> torch.Tensor:
        import time

        time.sleep(self.delay_s)
        logits = self.inner(ids, kv_cache=kv_cache).clone()
        logits[:, -1, self.banned] = -1e4
        return logits


def slow_engine(delay_s: float = 0.1) -> Engine:
    from nanochat_core.tokenizer import SPECIAL_TOKENS

    model, tok = tiny_chat_model(seq_len=256)
    return Engine(SlowModel(model, delay_s, [tok.encode_special(name) for name in SPECIAL_TOKENS]), tok)
