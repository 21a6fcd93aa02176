"""Engine: KV-cached decoding, sampling, stopping, calculator tool use and UTF-8 safe streaming."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nanochat_core.engine import Engine, sample_next_token
from nanochat_core.kv_cache import KVCache
from nanochat_core.model import GPT, GPTConfig, build_model
from nanochat_core.tokenizer import Tokenizer

TEXT = (
    "The quick brown fox jumps over the lazy dog. A calculator adds 2+3 and 12*7 quickly.\n"
    "Strawberries are red; the word strawberry has three r letters. Numbers: 0 1 2 3 4 5 6 7 8 9.\n"
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.\n"
)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core box they spin badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train([TEXT * 20], 400)


def perturbed_model(vocab_size: int, *, depth: int = 2, seq_len: int = 64, seed: int = 0) -> GPT:
    """A random-weight fp32 model whose logits are far from uniform (init zeroes lm_head/projections)."""
    model = build_model(GPTConfig.from_depth(depth, vocab_size=vocab_size, seq_len=seq_len), torch.device("cpu"), seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def model(tok: Tokenizer) -> GPT:
    return perturbed_model(tok.vocab_size)


class ScriptedModel(nn.Module):
    """Wraps a real GPT (so the KV cache is exercised) but makes row b emit `scripts[b]` greedily.

    Generated token k of a row is predicted at absolute position prompt_len + k − 1; past its script a
    row emits `fallback`. The prefill runs at batch 1, so all scripts must share their first token.
    """

    def __init__(self, base: GPT, prompt_len: int, scripts: list[list[int]], fallback: int) -> None:
        super().__init__()
        self.base, self.config, self.cos = base, base.config, base.cos
        self.prompt_len, self.scripts, self.fallback = prompt_len, scripts, fallback

    def forward(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        start = kv_cache.pos if kv_cache is not None else 0
        logits = self.base(idx, kv_cache=kv_cache)
        forced = torch.full_like(logits, -10.0)
        for b in range(idx.size(0)):
            script = self.scripts[b % len(self.scripts)]
            for t in range(idx.size(1)):
                k = start + t + 1 - self.prompt_len
                forced[b, t, script[k] if 0 <= k < len(script) else self.fallback] = 10.0
        return forced + 0.0 * logits


def greedy_full_forward(model: GPT, prompt: list[int], steps: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


def test_kv_cache_decode_matches_full_forward(model: GPT, tok: Tokenizer) -> None:
    seqs = torch.randint(0, tok.vocab_size, (3, 20), generator=torch.Generator().manual_seed(5))
    prompt_len = 8
    c = model.config
    with torch.no_grad():
        prefill = KVCache(batch_size=1, num_heads=c.n_kv_head, seq_len=prompt_len, head_dim=c.head_dim,
                          num_layers=c.n_layer)
        shared = seqs[:1, :prompt_len].clone()
        seqs[:, :prompt_len] = shared  # all rows share the prompt, then diverge
        full = model(seqs)
        prefill_logits = model(shared, kv_cache=prefill)
        cache = KVCache(batch_size=3, num_heads=c.n_kv_head, seq_len=20, head_dim=c.head_dim, num_layers=c.n_layer)
        cache.prefill_from(prefill)
        steps = [model(seqs[:, t : t + 1], kv_cache=cache)[:, 0] for t in range(prompt_len, 20)]
    torch.testing.assert_close(prefill_logits[0], full[0, :prompt_len], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(steps, dim=1), full[:, prompt_len:], atol=1e-5, rtol=0)
    assert full.std() > 0.1  # the comparison is not between near-constant logits


def test_temperature_zero_is_deterministic_and_matches_full_forward_argmax(model: GPT, tok: Tokenizer) -> None:
    engine = Engine(model, tok)
    prompt = tok.encode("The quick brown", prepend="<|bos|>")
    seqs, masks = engine.generate_batch(prompt, num_samples=2, max_tokens=12, temperature=0.0)
    again, _ = engine.generate_batch(prompt, num_samples=2, max_tokens=12, temperature=0.0, seed=7)
    assert seqs == again and seqs[0] == seqs[1]
    expected = greedy_full_forward(model, prompt, 12)
    cut = next((i for i, t in enumerate(expected) if t in (engine.assistant_end, engine.bos)), len(expected))
    assert seqs[0][len(prompt):] == expected[:cut]
    assert masks[0] == [0] * len(prompt) + [1] * cut


def test_same_seed_same_samples_different_seed_differs(model: GPT, tok: Tokenizer) -> None:
    engine = Engine(model, tok)
    prompt = tok.encode("She sells", prepend="<|bos|>")
    kwargs = {"num_samples": 4, "max_tokens": 16, "temperature": 1.0}
    a = engine.generate_batch(prompt, seed=1, **kwargs)
    b = engine.generate_batch(prompt, seed=1, **kwargs)
    c = engine.generate_batch(prompt, seed=2, **kwargs)
    assert a == b
    assert a[0] != c[0]


def test_first_token_is_sampled_once_and_broadcast_to_every_row(model: GPT, tok: Tokenizer) -> None:
    """ORIG: one multinomial draw from the batch-1 prefill logits, given to all rows; rows diverge after."""
    engine = Engine(model, tok)
    prompt = tok.encode("Numbers:", prepend="<|bos|>")
    columns = [c for c, _ in engine.generate(prompt, num_samples=16, max_tokens=4, temperature=1.5, seed=7)]
    assert len(columns[0]) == 16 and len(set(columns[0])) == 1
    assert len(set(columns[1])) > 1  # the rows sample independently from the second token on
    # the shared token is the generator's first draw at batch 1 (the same RNG consumption as ORIG)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        logits = model(torch.tensor([prompt]))[:, -1, :]
    expected = torch.multinomial(torch.softmax(logits / 1.5, dim=-1), num_samples=1, generator=gen)
    assert columns[0][0] == int(expected)


def test_sampling_does_not_touch_global_rng(model: GPT, tok: Tokenizer) -> None:
    engine = Engine(model, tok)
    prompt = tok.encode("A", prepend="<|bos|>")
    torch.manual_seed(0)
    before = torch.get_rng_state()
    engine.generate_batch(prompt, num_samples=2, max_tokens=5)
    assert torch.equal(before, torch.get_rng_state())


def test_sample_next_token_top_k() -> None:
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next_token(logits, gen, 1.0, top_k=1), logits.argmax(-1))
    top5 = logits.topk(5, dim=-1).indices
    picks = sample_next_token(logits, gen, 1.0, top_k=5)
    assert (top5 == picks[:, None]).any(dim=-1).all()
    with pytest.raises(ValueError):
        sample_next_token(logits, gen, -1.0)


def scripted_engine(tok: Tokenizer, model: GPT, prompt: list[int], scripts: list[list[int]]) -> Engine:
    filler = tok.encode(" the")[0]
    return Engine(ScriptedModel(model, len(prompt), scripts, fallback=filler), tok)


def test_max_tokens_and_num_samples(model: GPT, tok: Tokenizer) -> None:
    prompt = tok.encode("The", prepend="<|bos|>")
    engine = scripted_engine(tok, model, prompt, [[]])
    steps = list(engine.generate(prompt, num_samples=3, max_tokens=7, temperature=0.0))
    assert len(steps) == 7
    assert all(len(col) == 3 and len(mask) == 3 for col, mask in steps)
    seqs, masks = engine.generate_batch(prompt, num_samples=3, max_tokens=7)
    assert [len(s) for s in seqs] == [len(prompt) + 7] * 3 and [len(m) for m in masks] == [len(prompt) + 7] * 3


def test_max_tokens_capped_by_rotary_length(model: GPT, tok: Tokenizer) -> None:
    engine = Engine(model, tok)
    room = 5
    prompt = [tok.encode("a")[0]] * (engine.max_positions - room)
    steps = list(engine.generate(prompt, max_tokens=100, temperature=0.0))
    assert 1 <= len(steps) <= room


def test_rows_stop_on_assistant_end_and_bos(model: GPT, tok: Tokenizer) -> None:
    prompt = tok.encode("The", prepend="<|bos|>")
    a, b, c = tok.encode(" quick brown fox")[:3]
    end = tok.encode_special("<|assistant_end|>")
    scripts = [[a, b, end], [a, b, c, c, c, end], [a, tok.bos_token_id]]
    engine = scripted_engine(tok, model, prompt, scripts)
    steps = list(engine.generate(prompt, num_samples=3, max_tokens=50, temperature=0.0))
    assert len(steps) == 6  # stops once every row is done, far before max_tokens
    assert [col[0] for col, _ in steps][:3] == [a, b, end]
    assert [mask[0] for _, mask in steps][3:] == [0, 0, 0]  # finished row is padding
    seqs, masks = engine.generate_batch(prompt, num_samples=3, max_tokens=50, temperature=0.0)
    assert seqs == [prompt + [a, b], prompt + [a, b, c, c, c], prompt + [a]]
    assert masks[1] == [0] * len(prompt) + [1] * 5


def test_tool_use_force_feeds_calculator_output(model: GPT, tok: Tokenizer) -> None:
    special = tok.encode_special
    prompt = tok.encode("Compute", prepend="<|bos|>")
    expr = tok.encode(" 2+3 ")
    end = special("<|assistant_end|>")
    filler = tok.encode(" the")[0]
    # the model keeps "sampling" filler while the output is forced, then ends
    script = [special("<|python_start|>"), *expr, special("<|python_end|>"), filler, filler, filler, filler, end]
    engine = scripted_engine(tok, model, prompt, [script])
    seqs, masks = engine.generate_batch(prompt, max_tokens=40, temperature=0.0)
    completion, mask = seqs[0][len(prompt):], masks[0][len(prompt):]
    forced = [special("<|output_start|>"), *tok.encode("5"), special("<|output_end|>")]
    n_call = len(expr) + 2
    assert completion[:n_call] == script[:n_call] and mask[:n_call] == [1] * n_call
    assert completion[n_call : n_call + len(forced)] == forced
    assert mask[n_call : n_call + len(forced)] == [0] * len(forced)
    assert mask[n_call + len(forced) :] == [1] * (len(mask) - n_call - len(forced))
    assert "<|output_start|>5<|output_end|>" in tok.decode(completion)


def test_failed_tool_call_forces_nothing(model: GPT, tok: Tokenizer) -> None:
    special = tok.encode_special
    prompt = tok.encode("Compute", prepend="<|bos|>")
    script = [special("<|python_start|>"), *tok.encode("1/0"), special("<|python_end|>"), special("<|assistant_end|>")]
    engine = scripted_engine(tok, model, prompt, [script])
    seqs, masks = engine.generate_batch(prompt, max_tokens=20, temperature=0.0)
    assert seqs[0][len(prompt):] == script[:-1]
    assert special("<|output_start|>") not in seqs[0] and 0 not in masks[0][len(prompt):]


def test_stream_text_never_splits_utf8_characters(model: GPT, tok: Tokenizer) -> None:
    text = "hé🙂 ok ÿ€"
    ids = tok.encode(text)
    assert len(ids) > len(text)  # some characters span several byte tokens
    prompt = tok.encode("Say", prepend="<|bos|>")
    engine = scripted_engine(tok, model, prompt, [ids + [tok.encode_special("<|assistant_end|>")]])
    pieces = list(engine.stream_text(prompt, max_tokens=50, temperature=0.0))
    assert "".join(pieces) == text
    assert len(pieces) > 1 and all("\ufffd" not in p for p in pieces)
