"""The GPT: parameter counts and FLOPs of the pinned shapes, init, soft-cap, causality, KV cache, GQA."""

from __future__ import annotations

import math

import pytest
import torch

from nanochat_core.kv_cache import KVCache
from nanochat_core.model import SOFTCAP, GPT, GPTConfig, build_model

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def meta_model(depth: int, vocab: int = 65_536, seq_len: int = 2048) -> GPT:
    with torch.device("meta"):
        return GPT(GPTConfig.from_depth(depth, vocab_size=vocab, seq_len=seq_len))


def perturbed(config: GPTConfig, seed: int = 0, scale: float = 0.1) -> GPT:
    """A model whose zero-initialized matrices are made non-trivial with a seeded generator."""
    model = build_model(config, CPU, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def small_config(**changes) -> GPTConfig:
    base = dict(seq_len=32, vocab_size=97, n_layer=2, n_head=4, n_kv_head=4, n_embd=64)
    return GPTConfig(**{**base, **changes})


@pytest.mark.parametrize(
    "depth, params",
    [(20, 560_988_160), (26, 1_081_999_360), (32, 1_879_048_192)],
)
def test_parameter_counts_of_pinned_depths(depth, params):
    model = meta_model(depth)
    assert model.num_params() == params
    assert model.config.n_embd == 64 * depth and model.config.head_dim == 128


def test_d20_parameter_split():
    model = meta_model(20)
    groups = model.param_groups()
    assert sum(p.numel() for p in groups["matrix"]) == 393_216_000
    assert groups["embedding"][0].numel() == groups["unembedding"][0].numel() == 83_886_080
    # every parameter is in exactly one group
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


@pytest.mark.parametrize("depth, approx", [(20, 3.49e9), (32, 1.208e10)])
def test_flops_per_token(depth, approx):
    model = meta_model(depth)
    c = model.config
    expected = 6 * (model.num_params() - c.vocab_size * c.n_embd) + 12 * c.n_layer * c.n_head * c.head_dim * c.seq_len
    assert model.flops_per_token() == expected
    assert model.flops_per_token() == pytest.approx(approx, rel=1e-3)


def test_shape_rule_and_bad_depth():
    c = GPTConfig.from_depth(4, vocab_size=4096, seq_len=256)
    assert (c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.head_dim) == (4, 256, 2, 2, 128)
    with pytest.raises(ValueError):
        GPTConfig.from_depth(0)


def test_init_zeroes_outputs_and_gives_uniform_logits():
    config = small_config()
    model = build_model(config, CPU, seed=3)
    assert not model.lm_head.weight.any()
    for block in model.transformer.h:
        assert not block.attn.c_proj.weight.any() and not block.mlp.c_proj.weight.any()
        assert block.attn.c_q.weight.std() > 0
    assert model.transformer.wte.weight.std().item() == pytest.approx(1.0, rel=0.1)
    idx = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    logits = model(idx)
    assert logits.dtype == torch.float32 and logits.shape == (2, 16, config.vocab_size)
    assert torch.equal(logits, torch.zeros_like(logits))
    loss = model(idx, idx)
    assert loss.item() == pytest.approx(math.log(config.vocab_size), rel=1e-6)


def test_build_model_is_seeded_and_leaves_the_global_rng_alone():
    config = small_config()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = build_model(config, CPU, seed=5), build_model(config, CPU, seed=5), build_model(config, CPU, seed=6)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["transformer.wte.weight"], sc["transformer.wte.weight"])


def test_softcap_bounds_logits():
    model = perturbed(small_config(), scale=3.0)  # large weights: raw logits far beyond the cap
    idx = torch.randint(0, 97, (2, 32), generator=torch.Generator().manual_seed(1))
    captured = []
    handle = model.lm_head.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        logits = model(idx)
    handle.remove()
    assert captured[0].abs().max() > 2 * SOFTCAP  # the raw logits really exceed the cap
    assert logits.abs().max() <= SOFTCAP
    assert logits.abs().max() > 0.9 * SOFTCAP


def test_per_token_loss_and_ignore_index():
    model = perturbed(small_config())
    gen = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 97, (2, 12), generator=gen)
    targets = torch.randint(0, 97, (2, 12), generator=gen)
    targets[0, :5] = -1
    with torch.no_grad():
        per_token = model(idx, targets, loss_reduction="none")
        mean = model(idx, targets)
        logits = model(idx)
    assert per_token.shape == (2, 12)
    assert (per_token[0, :5] == 0).all() and (per_token[targets >= 0] > 0).all()
    assert mean.item() == pytest.approx(per_token[targets >= 0].mean().item(), rel=1e-5)
    manual = -torch.log_softmax(logits[1, 3], -1)[targets[1, 3]]
    assert per_token[1, 3].item() == pytest.approx(manual.item(), rel=1e-5)


def test_causal():
    model = perturbed(small_config())
    idx = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(3))
    changed = idx.clone()
    changed[0, 12:] = (changed[0, 12:] + 1) % 97
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12], rtol=0, atol=0)
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def _cache(config: GPTConfig, batch: int, seq_len: int) -> KVCache:
    return KVCache(batch_size=batch, num_heads=config.n_kv_head, seq_len=seq_len, head_dim=config.head_dim,
                   num_layers=config.n_layer, device=CPU, dtype=torch.float32)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1], ids=["mha", "gqa2", "mqa"])
def test_kv_cache_decode_equals_full_forward(n_kv_head):
    config = small_config(n_kv_head=n_kv_head)
    model = perturbed(config)
    assert model.transformer.h[0].attn.c_k.weight.shape == (n_kv_head * config.head_dim, config.n_embd)
    idx = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(idx)
        cache = _cache(config, 2, 24)
        pieces = [model(idx[:, :10], kv_cache=cache)]  # prefill
        pieces.append(model(idx[:, 10:15], kv_cache=cache))  # a chunk after a cached prefix
        for t in range(15, 24):  # one token at a time
            pieces.append(model(idx[:, t : t + 1], kv_cache=cache))
    assert cache.pos == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-4)


def test_kv_cache_grows_and_prefill_broadcasts():
    config = small_config(n_kv_head=2)
    model = perturbed(config)
    prompt = torch.randint(0, 97, (1, 8), generator=torch.Generator().manual_seed(5))
    nxt = torch.tensor([[3], [50], [96]])
    with torch.no_grad():
        one = _cache(config, 1, 4)  # smaller than the prompt: must grow
        model(prompt, kv_cache=one)
        assert one.capacity >= 8 and one.pos == 8
        many = _cache(config, 3, 16)
        many.prefill_from(one)
        step = model(nxt, kv_cache=many)
        full = model(torch.cat([prompt.expand(3, -1), nxt], dim=1))
    torch.testing.assert_close(step[:, 0], full[:, -1], rtol=1e-4, atol=1e-4)
    many.reset()
    assert many.pos == 0


def test_gqa_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="multiple"):
        GPT(small_config(n_head=4, n_kv_head=3))


def test_sequence_beyond_rotary_cache_is_an_error():
    config = small_config(seq_len=4)  # rotary cache = 40 positions
    model = perturbed(config)
    with pytest.raises(ValueError, match="rotary"):
        model(torch.zeros(1, 41, dtype=torch.long))


def test_backward_reaches_every_parameter():
    model = perturbed(small_config())
    model.train()
    idx = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(6))
    model(idx, idx).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_softcap_is_applied_in_the_autocast_dtype_then_cast():
    """ORIG: tanh on the bf16 lm_head output under autocast, then fp32; the loss sees the same logits."""
    model = perturbed(small_config(), scale=1.0)
    idx = torch.randint(0, 97, (2, 32), generator=torch.Generator().manual_seed(2))
    captured = []
    handle = model.lm_head.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)
        loss = model(idx, idx, loss_reduction="none")
    handle.remove()
    raw = captured[0]
    assert raw.dtype == torch.bfloat16 and logits.dtype == torch.float32
    expected = (SOFTCAP * torch.tanh(raw / SOFTCAP)).float()
    assert torch.equal(logits, expected)
    assert not torch.equal(logits, SOFTCAP * torch.tanh(raw.float() / SOFTCAP))  # the fp32 cap differs
    ce = torch.nn.functional.cross_entropy(expected.view(-1, 97), idx.view(-1), reduction="none").view(2, 32)
    assert torch.equal(loss, ce)


def test_rotary_tables_are_bf16_on_cuda_rounded_from_fp32():
    from nanochat_core.model import rotary_dtype

    assert rotary_dtype("cuda") == torch.bfloat16 and rotary_dtype(torch.device("cuda", 3)) == torch.bfloat16
    assert rotary_dtype("cpu") == torch.float32
    model = build_model(small_config(), CPU, seed=0)
    assert model.cos.dtype == torch.float32
    # ORIG's table: angles in fp32, cos/sin rounded to bf16 once
    hd = small_config().n_embd // small_config().n_head
    inv = 1.0 / (10_000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(torch.arange(model.cos.size(1), dtype=torch.float32), inv)
    assert torch.equal(model.cos[0, :, 0].to(torch.bfloat16), freqs.cos().bfloat16())


def test_model_builds_its_rotary_tables_in_the_device_rotary_dtype(monkeypatch):
    """What a CUDA model does: tables in bf16 (rounded from the fp32 angles), and the forward uses them."""
    import nanochat_core.model as model_mod

    fp32 = build_model(small_config(), CPU, seed=0)
    monkeypatch.setattr(model_mod, "rotary_dtype", lambda device: torch.bfloat16)
    bf16 = build_model(small_config(), CPU, seed=0)
    assert bf16.cos.dtype == torch.bfloat16 and bf16.sin.dtype == torch.bfloat16
    assert torch.equal(bf16.cos, fp32.cos.bfloat16()) and torch.equal(bf16.sin, fp32.sin.bfloat16())
    idx = torch.randint(0, 97, (1, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.isfinite(bf16(idx)).all()
