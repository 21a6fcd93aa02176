"""MuonAdamW: Newton–Schulz, the AdamW half against torch.optim.AdamW, the Muon update, clipping, state."""

from __future__ import annotations

import io
import math

import pytest
import torch

from nanochat_core.optim import (
    NS_COEFFS,
    MuonAdamW,
    adamw_update,
    cpu_has_native_bf16,
    newton_schulz,
    newton_schulz_dtype,
)

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


class _ReferenceAdamW:
    """AdamW as ORIG's distributed AdamW computes it: eps added to sqrt of the *uncorrected* second
    moment, bias corrections folded into the step size lr * sqrt(1 - b2^t) / (1 - b1^t)."""

    def __init__(self, params_lrs, *, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0) -> None:
        self.params_lrs, self.betas, self.eps, self.wd = params_lrs, betas, eps, weight_decay
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p, _ in params_lrs]
        self.t = 0

    def zero_grad(self) -> None:
        for p, _ in self.params_lrs:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for (p, lr), (m, v) in zip(self.params_lrs, self.state):
            p.mul_(1 - lr * self.wd)
            m.copy_(b1 * m + (1 - b1) * p.grad)
            v.copy_(b2 * v + (1 - b2) * p.grad * p.grad)
            p.sub_(lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t) * m / (v.sqrt() + self.eps))


def _torch_adamw(emb, unemb, weight_decay: float, eps: float = 1e-10) -> _ReferenceAdamW:
    return _ReferenceAdamW([(emb, 0.05 * SCALE), (unemb, 0.01 * SCALE)], eps=eps, weight_decay=weight_decay)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_part_matches_orig_dist_adamw(weight_decay):
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


# ---- ORIG's distributed AdamW numerics, state allocation, bf16 detection, async communication ----------


def test_eps_is_added_to_the_uncorrected_second_moment_as_orig():
    """With a large eps the placement shows: ours follows ORIG's DistAdamW, not torch's AdamW."""
    ours_p, ref_p, torch_p = _toy_params(), _toy_params(), _toy_params()
    ours = _ours(ours_p[0], ours_p[1], None, grad_clip=0.0, eps=1e-2)
    ref = _torch_adamw(ref_p[0], ref_p[1], 0.0, eps=1e-2)
    tadam = torch.optim.AdamW([{"params": [torch_p[0]], "lr": 0.05 * SCALE}, {"params": [torch_p[1]], "lr": 0.01 * SCALE}],
                              betas=(0.8, 0.95), eps=1e-2, weight_decay=0.0)
    for step in range(4):
        for params, opt in ((ours_p, ours), (ref_p, ref), (torch_p, tadam)):
            opt.zero_grad()
            _toy_loss(params[0], params[1], params[2].detach(), step).backward()
            opt.step()
    torch.testing.assert_close(ours_p[0], ref_p[0], rtol=1e-5, atol=1e-6)
    assert (ours_p[0] - torch_p[0]).abs().max() > 1e-3


def test_adam_moments_take_the_parameter_dtype():
    """ORIG keeps the bf16 embedding's AdamW moments in bf16 (its state is zeros_like the bf16 slice)."""
    emb = torch.nn.Parameter(torch.randn(12, 8).to(torch.bfloat16))
    unemb = torch.nn.Parameter(torch.randn(12, 8))
    opt = _ours(emb, unemb, None, grad_clip=0.0)
    emb.grad, unemb.grad = torch.randn(12, 8).to(torch.bfloat16), torch.randn(12, 8)
    opt.step()
    assert {k: v.dtype for k, v in opt.adam[0].state[0].items()} == {"m": torch.bfloat16, "v": torch.bfloat16}
    assert opt.adam[1].state[0]["m"].dtype == torch.float32
    assert emb.dtype == torch.bfloat16 and torch.isfinite(emb.float()).all()


def test_optimizer_state_is_allocated_once(monkeypatch):
    """No step allocates state: every buffer exists after construction and keeps its storage."""
    params = _toy_params()
    opt = _ours(*params)
    before = [t.data_ptr() for g in opt.adam for st in g.state.values() for t in st.values()]
    before += [b.data_ptr() for g in opt.muon for b in g.state.values()]
    assert len(before) == 2 * 2 + 1
    calls = []
    for name in ("zeros_like", "zeros"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, _name=name, **k: (calls.append(_name), _real(*a, **k))[1])
    _run_steps(opt, params, range(3))
    assert calls == []
    after = [t.data_ptr() for g in opt.adam for st in g.state.values() for t in st.values()]
    after += [b.data_ptr() for g in opt.muon for b in g.state.values()]
    assert after == before


@pytest.mark.parametrize(
    "flags, native",
    [("fpu avx avx2 avx512f", False), ("avx512f avx512_bf16 avx512_vnni", True), ("amx_bf16 amx_tile amx_int8", True), ("", False)],
)
def test_cpu_native_bf16_detection(flags, native):
    cpuinfo = f"processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"
    assert cpu_has_native_bf16(cpuinfo) is native


def test_newton_schulz_runs_bf16_where_the_cpu_has_native_bf16(monkeypatch):
    import nanochat_core.optim as optim

    monkeypatch.setattr(optim, "_host_native_bf16", lambda: True)
    assert newton_schulz_dtype("cpu") == torch.bfloat16
    assert newton_schulz(torch.randn(8, 16)).dtype == torch.bfloat16
    monkeypatch.setattr(optim, "_host_native_bf16", lambda: False)
    assert newton_schulz_dtype("cpu") == torch.float32
    assert newton_schulz_dtype("cuda") == torch.bfloat16
    assert newton_schulz(torch.randn(8, 16)).dtype == torch.float32


def test_update_functions_are_compiled_on_cuda_only():
    params = _toy_params()
    eager = _ours(*params)
    assert not eager.compiled and eager._newton_schulz is newton_schulz
    forced = _ours(*_toy_params(), compile=True)  # what a CUDA optimizer does by default
    assert forced.compiled and forced._newton_schulz is not newton_schulz and forced._adamw_update is not adamw_update


class _FakeWork:
    def __init__(self, log: list, what: str) -> None:
        self.log, self.what = log, what

    def wait(self) -> None:
        self.log.append(("wait", self.what))


class _FakeNccl:
    """Records the order in which the optimizer launches and waits on collectives (one rank of 2)."""

    class ReduceOp:
        AVG, SUM = "avg", "sum"

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.n = 0

    def _work(self, kind: str, async_op: bool):
        self.n += 1
        what = f"{kind}{self.n}"
        self.log.append(("launch", what))
        work = _FakeWork(self.log, what)
        if not async_op:
            work.wait()
        return work if async_op else None

    def get_backend(self):
        return "nccl"

    def get_world_size(self):
        return 2

    def reduce_scatter_tensor(self, out, inp, op=None, async_op=False):
        out.copy_(inp[: out.size(0)])
        return self._work("reduce", async_op)

    def reduce_scatter(self, out, inputs, op=None, async_op=False):
        out.copy_(inputs[0])
        return self._work("reduce", async_op)

    def all_gather_into_tensor(self, out, inp, async_op=False):
        return self._work("gather", async_op)

    def all_gather(self, outputs, inp, async_op=False):
        return self._work("gather", async_op)

    def all_reduce(self, t, op=None, async_op=False):
        return self._work("norm", async_op)


@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_reductions_are_launched_at_once_and_gathers_overlap_the_updates(monkeypatch, clip):
    """ORIG's DistMuon order: every reduce-scatter in flight before the first wait; each updated part's
    all-gather launched before the next part's reduction is waited on (no clip), all gathers waited last."""
    import nanochat_core.optim as optim

    fake = _FakeNccl()
    monkeypatch.setattr(optim, "dist", fake)
    gen = torch.Generator().manual_seed(0)
    mats = [torch.nn.Parameter(torch.randn(8, 16, generator=gen)) for _ in range(4)]
    emb, unemb, _ = _toy_params()
    opt = MuonAdamW({"embedding": [emb], "unembedding": [unemb], "matrix": mats}, model_dim=MODEL_DIM,
                    grad_clip=clip, rank=0, world_size=2)
    for p in (emb, unemb, *mats):
        p.grad = torch.randn(p.shape, generator=gen)
    opt.step()
    log = fake.log
    reduces = [i for i, (ev, w) in enumerate(log) if ev == "launch" and w.startswith("reduce")]
    waits = [i for i, (ev, _) in enumerate(log) if ev == "wait"]
    assert len(reduces) == 2 + 2  # two AdamW slices, two chunks of 2 matrices
    assert max(reduces) < min(waits)
    gathers = [i for i, (ev, w) in enumerate(log) if ev == "launch" and w.startswith("gather")]
    gather_waits = [i for i, (ev, w) in enumerate(log) if ev == "wait" and w.startswith("gather")]
    assert len(gathers) == 4 and max(gathers) < min(gather_waits)
    reduce_waits = [i for i, (ev, w) in enumerate(log) if ev == "wait" and w.startswith("reduce")]
    if clip == 0:
        assert min(gathers) < max(reduce_waits)  # communication overlaps the later updates
    else:  # the clip needs every part first, then one scalar all-reduce
        norm = [i for i, (ev, w) in enumerate(log) if ev == "launch" and w.startswith("norm")]
        assert max(reduce_waits) < norm[0] < min(gathers)


def _dist_worker(rank: int, world: int, init_file: str, clip: float, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        params, opt = _dist_setup(clip, rank, world)
        _dist_steps(params, opt, rank, world)
        if rank == 0:
            torch.save([p.detach() for p in params], f"{out_dir}/params.pt")
    finally:
        dist.destroy_process_group()


def _dist_setup(clip: float, rank: int, world: int):
    gen = torch.Generator().manual_seed(3)
    emb = torch.nn.Parameter(torch.randn(12, 8, generator=gen))
    unemb = torch.nn.Parameter(torch.randn(12, 8, generator=gen) * 0.1)
    mats = [torch.nn.Parameter(torch.randn(8, 16, generator=gen) * 0.3) for _ in range(3)]  # 3: an incomplete chunk
    params = [emb, unemb, *mats]
    opt = MuonAdamW({"embedding": [emb], "unembedding": [unemb], "matrix": mats}, model_dim=MODEL_DIM,
                    grad_clip=clip, rank=rank, world_size=world)
    return params, opt


def _dist_steps(params, opt, rank: int, world: int) -> None:
    """Every rank gets the mean-preserving share of one global gradient per step."""
    for step in range(4):
        gen = torch.Generator().manual_seed(50 + step)
        shares = [[torch.randn(p.shape, generator=gen) * (1 + 30 * (step % 2)) for p in params] for _ in range(2)]
        for p, *per_rank in zip(params, *shares):
            p.grad = per_rank[rank].clone() if world == 2 else (per_rank[0] + per_rank[1]) / 2
        opt.step()
        opt.zero_grad()


@pytest.mark.slow
@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_two_gloo_ranks_equal_one_process(tmp_path, clip):
    """The asynchronous reduce / update / gather path over 2 gloo ranks gives the 1-process result."""
    import torch.multiprocessing as mp

    mp.spawn(_dist_worker, args=(2, str(tmp_path / "init"), clip, str(tmp_path)), nprocs=2, join=True)
    two = torch.load(tmp_path / "params.pt")
    params, opt = _dist_setup(clip, 0, 1)
    _dist_steps(params, opt, 0, 1)
    for a, b in zip(params, two):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_update_functions_match_eager():
    """What CUDA runs (torch.compile of Newton-Schulz and the AdamW update), checked on the CPU."""
    import shutil

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("no C++ compiler for inductor's CPU backend")
    eager_p, compiled_p = _toy_params(), _toy_params()
    eager = _ours(*eager_p, grad_clip=1.0)
    compiled = _ours(*compiled_p, grad_clip=1.0, compile=True)
    _run_steps(eager, eager_p, range(3))
    _run_steps(compiled, compiled_p, range(3))
    for a, b in zip(eager_p, compiled_p):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
