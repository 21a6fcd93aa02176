"""MuonAdamW: Newton–Schulz, the AdamW half against torch.optim.AdamW, the Muon update, clipping, state."""

from __future__ import annotations

import io
import math

import pytest
import torch

from nanochat_core.optim import NS_COEFFS, MuonAdamW, newton_schulz

MODEL_DIM = 192  # AdamW LRs are scaled by (192/768)^-0.5 = 2
SCALE = (MODEL_DIM / 768) ** -0.5
NS_BAND = (0.6, 1.25)  # where 5 quintic steps leave singular values that started within a factor ~100 of the top


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _with_spectrum(rows: int, cols: int, smallest: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A matrix with singular values log-spaced in [smallest, 1], and its polar factor U·Vᵀ."""
    gen = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(rows, k, generator=gen))
    V, _ = torch.linalg.qr(torch.randn(cols, k, generator=gen))
    s = torch.logspace(math.log10(smallest), 0, k)
    return U @ torch.diag(s) @ V.T, U @ V.T


@pytest.mark.parametrize("shape", [(96, 96), (48, 160), (160, 48)], ids=["square", "wide", "tall"])
def test_newton_schulz_orthogonalizes(shape):
    G, polar = _with_spectrum(*shape, smallest=1e-2, seed=sum(shape))
    G = G * 37.0  # the input scale must not matter
    X = newton_schulz(G)
    assert X.shape == G.shape and X.dtype == torch.float32
    sv = torch.linalg.svdvals(X)
    assert NS_BAND[0] <= sv.min() and sv.max() <= NS_BAND[1], (sv.min(), sv.max())
    # Same singular vectors as the input: close to the polar factor, far from the input direction.
    assert (X - polar).norm() / polar.norm() < 0.3


def test_newton_schulz_batched_and_input_untouched():
    gen = torch.Generator().manual_seed(1)
    G = torch.randn(3, 32, 128, generator=gen)
    before = G.clone()
    X = newton_schulz(G)
    assert torch.equal(G, before)
    for i in range(3):
        torch.testing.assert_close(X[i], newton_schulz(G[i]))
        sv = torch.linalg.svdvals(X[i])
        assert NS_BAND[0] <= sv.min() and sv.max() <= NS_BAND[1]


def test_newton_schulz_coefficients_are_the_quintic():
    assert NS_COEFFS == (3.4445, -4.7750, 2.0315)
    # One step on a scalar-like 1x1 input x gives a·x + b·x³ + c·x⁵.
    x = torch.tensor([[0.5]])
    a, b, c = NS_COEFFS
    torch.testing.assert_close(newton_schulz(x, steps=1), torch.tensor([[a + b + c]]), rtol=1e-5, atol=1e-6)


# ---- the AdamW half -------------------------------------------------------------------------------


def _toy_params(seed: int = 0) -> tuple[torch.nn.Parameter, torch.nn.Parameter, torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    emb = torch.nn.Parameter(torch.randn(12, 8, generator=gen))
    unemb = torch.nn.Parameter(torch.randn(12, 8, generator=gen) * 0.1)
    mat = torch.nn.Parameter(torch.randn(8, 16, generator=gen) * 0.3)
    return emb, unemb, mat


def _toy_loss(emb, unemb, mat, step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.randint(0, 12, (6,), generator=gen)
    h = emb[x] @ mat  # (6, 16)
    logits = h[:, :8] @ unemb.T
    return torch.nn.functional.cross_entropy(logits, torch.randint(0, 12, (6,), generator=gen)) * (1 + 40 * (step % 2))


def _ours(emb, unemb, mat, **kw) -> MuonAdamW:
    groups = {"embedding": [emb], "unembedding": [unemb], "matrix": [mat] if mat is not None else []}
    return MuonAdamW(groups, model_dim=MODEL_DIM, embedding_lr=0.05, unembedding_lr=0.01, matrix_lr=0.02, **kw)


def _torch_adamw(emb, unemb, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        [{"params": [emb], "lr": 0.05 * SCALE}, {"params": [unemb], "lr": 0.01 * SCALE}],
        betas=(0.8, 0.95), eps=1e-10, weight_decay=weight_decay,
    )


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_part_matches_torch_adamw(weight_decay):
    ours_p = _toy_params()
    ref_p = [torch.nn.Parameter(p.detach().clone()) for p in ours_p]
    ours = _ours(ours_p[0], ours_p[1], None, grad_clip=0.0, weight_decay=weight_decay)
    ref = _torch_adamw(ref_p[0], ref_p[1], weight_decay)
    for step in range(8):
        for params, opt in ((ours_p, ours), (ref_p, ref)):
            opt.zero_grad()
            _toy_loss(params[0], params[1], params[2].detach(), step).backward()
            opt.step()
    moved = (ours_p[0] - _toy_params()[0]).abs().max()
    assert moved > 0.1  # the comparison is not between two untouched tensors
    for a, b in zip(ours_p[:2], ref_p[:2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_lr_scaling_and_multiplier():
    emb, unemb, mat = _toy_params()
    opt = _ours(emb, unemb, mat)
    assert [g.lr for g in opt.adam] == pytest.approx([0.05 * SCALE, 0.01 * SCALE])
    assert opt.muon[0].lr == pytest.approx(0.02)  # Muon's LR is not scaled by width
    opt.set_lr_multiplier(0.25)
    assert [g.lr for g in (*opt.adam, *opt.muon)] == pytest.approx([0.0125 * SCALE, 0.0025 * SCALE, 0.005])


@pytest.mark.parametrize("shape", [(8, 16), (16, 8)], ids=["wide", "tall"])
def test_muon_update_is_nesterov_momentum_then_newton_schulz(shape):
    gen = torch.Generator().manual_seed(4)
    mat = torch.nn.Parameter(torch.randn(*shape, generator=gen))
    emb, unemb, _ = _toy_params()
    opt = _ours(emb, unemb, mat, grad_clip=0.0, momentum=0.9)
    start, buf = mat.detach().clone(), torch.zeros(shape)
    for step in range(3):
        g = torch.randn(*shape, generator=gen)
        mat.grad, emb.grad, unemb.grad = g.clone(), torch.zeros_like(emb), torch.zeros_like(unemb)
        opt.step()
        buf = 0.9 * buf + 0.1 * g
        nesterov = 0.1 * g + 0.9 * buf
        start = start - 0.02 * math.sqrt(max(1.0, shape[0] / shape[1])) * newton_schulz(nesterov)
        torch.testing.assert_close(mat.detach(), start, rtol=1e-5, atol=1e-5)


def test_muon_rejects_non_matrices():
    emb, unemb, _ = _toy_params()
    with pytest.raises(ValueError, match="2-D"):
        _ours(emb, unemb, torch.nn.Parameter(torch.zeros(4, 4, 4)))


def test_adam_rows_must_divide_by_world_size():
    emb, unemb, mat = _toy_params()  # 12 rows
    with pytest.raises(ValueError, match="world size"):
        _ours(emb, unemb, mat, world_size=5)


def test_clipping_caps_the_global_norm():
    """Our optimizer with grad_clip=1 equals clip_grad_norm_(all params, 1) + AdamW on the Adam params."""
    ours_p = _toy_params()
    ref_p = [torch.nn.Parameter(p.detach().clone()) for p in ours_p]
    ours = _ours(*ours_p, grad_clip=1.0)
    ref = _torch_adamw(ref_p[0], ref_p[1], 0.0)
    clipped_steps = 0
    for step in range(6):
        ours.zero_grad()
        ref.zero_grad()
        ref_p[2].grad = None
        _toy_loss(*ours_p, step).backward()
        _toy_loss(*ref_p, step).backward()
        expected_norm = torch.sqrt(sum(p.grad.square().sum() for p in ref_p))
        total = torch.nn.utils.clip_grad_norm_(ref_p, 1.0)
        torch.testing.assert_close(total, expected_norm)
        clipped_steps += int(total > 1.0)
        norm = ours.step()
        ref.step()
        assert norm.ndim == 0
        torch.testing.assert_close(norm, expected_norm, rtol=1e-6, atol=1e-7)  # the pre-clip global norm
        for a, b in zip(ours_p[:2], ref_p[:2]):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
        with torch.no_grad():  # keep the Muon matrix in lockstep so the losses stay comparable
            ref_p[2].copy_(ours_p[2])
    assert 0 < clipped_steps < 6  # some steps clipped, some not


def _run_steps(opt: MuonAdamW, params, steps: range) -> None:
    for step in steps:
        opt.zero_grad()
        _toy_loss(*params, step).backward()
        opt.step()


def test_state_dict_round_trip():
    a_p = _toy_params()
    a = _ours(*a_p)
    _run_steps(a, a_p, range(3))
    a.set_lr_multiplier(0.5)
    a.set_momentum(0.9)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    b_p = [torch.nn.Parameter(p.detach().clone()) for p in a_p]
    b = _ours(*b_p)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=False))
    assert b.step_count == 3 and b.momentum == 0.9
    assert [g.lr for g in (*b.adam, *b.muon)] == [g.lr for g in (*a.adam, *a.muon)]
    _run_steps(a, a_p, range(3, 6))
    _run_steps(b, b_p, range(3, 6))
    for x, y in zip(a_p, b_p):
        assert torch.equal(x, y)
    # Without the state the continuation differs (the test can tell).
    c_p = [torch.nn.Parameter(p.detach().clone()) for p in b_p]
    fresh = _ours(*c_p)
    _run_steps(fresh, c_p, range(6, 7))
    _run_steps(b, b_p, range(6, 7))
    assert not torch.equal(b_p[0], c_p[0])


def test_world_size_mismatch_on_load():
    p = _toy_params()
    state = _ours(*p).state_dict()
    q = _toy_params()
    two_ranks = _ours(*q, rank=0, world_size=2)
    with pytest.raises(ValueError, match="saved with 1 ranks; this run has 2"):
        two_ranks.load_state_dict(state)
