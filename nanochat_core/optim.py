"""The ORIG optimizer pair, as one object: Muon for block matrices, AdamW for the embeddings.

One code path serves 1 and N processes, so the math is identical however the work is spread:
1. every rank's gradients are averaged across ranks, all reductions launched at once without waiting
   (reduce-scatter: each rank receives only the part it updates, its slice of each AdamW matrix and
   whole Muon matrices assigned block-cyclically within each same-shape group);
2. with clipping on (pretraining), the global gradient norm is summed from those synchronized parts
   (one scalar all-reduce, no host sync) and clipped: world-size invariant, where ORIG clipped each
   rank's local gradient (docs/fidelity.md measures the difference);
3. each rank updates what it owns as soon as its reduction lands (sharded optimizer state, ZeRO-2
   style), and launches the all-gather of the result at once, so communication overlaps the
   Newton-Schulz of the next matrix, as ORIG's DistMuon / DistAdamW do;
4. the step waits for the gathers last.
There is no DDP wrapper: this optimizer does the gradient averaging. All state (moments, momentum
buffers, padding) is allocated once, at construction. On CUDA the Newton-Schulz and AdamW update
functions are compiled, as ORIG compiles them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from nanochat_core.device import has_native_bf16

NS_COEFFS = (3.4445, -4.7750, 2.0315)
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 matmul


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX-BF16).

    `cpuinfo` is the text of /proc/cpuinfo (read when None; False where it cannot be read).
    """
    if cpuinfo is None:
        return _host_native_bf16()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return any(f in flags for f in CPU_BF16_FLAGS)


@functools.cache
def _host_native_bf16() -> bool:
    try:
        return cpu_has_native_bf16(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return False


def newton_schulz_dtype(device: torch.device | str) -> torch.dtype:
    """bf16 on CUDA and on CPUs with native bf16 matmul (as ORIG everywhere); fp32 where bf16 is emulated
    (CPUs without it, GPUs below sm_80 such as T4 and V100)."""
    device = torch.device(device)
    if (device.type == "cuda" and has_native_bf16(device)) or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def newton_schulz(G: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximately orthogonalize a (batch of) matrix with the quintic Newton–Schulz iteration.

    Normalized by the Frobenius norm first; tall matrices are processed transposed. Computes in
    `dtype`, by default `newton_schulz_dtype(G.device)`: bf16 as ORIG does on CUDA and on CPUs with
    native bf16 matmul, fp32 on CPUs that would emulate bf16 (~30x slower there).
    """
    a, b, c = NS_COEFFS
    if dtype is None:
        dtype = newton_schulz_dtype(G.device)
    X = G.to(dtype)
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if tall:
        X = X.mT
    return X


def adamw_update(
    p: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
    step_size: torch.Tensor, decay: torch.Tensor, beta1: float, beta2: float, eps: float,
) -> None:
    """One AdamW update of `p` in place, in ORIG DistAdamW's order and dtype (the parameter's own).

    update = m / (sqrt(v) + eps) * step_size with step_size = lr * sqrt(1 - beta2^t) / (1 - beta1^t):
    eps is added to the uncorrected second moment, as ORIG's distributed AdamW does (torch's AdamW
    adds it after the bias correction). `decay` = 1 - lr * weight_decay is applied first.
    """
    p.mul_(decay)
    m.mul_(beta1).add_(grad, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = v.sqrt().add_(eps)
    p.add_(m.div(denom).mul_(step_size), alpha=-1.0)


@dataclass
class _AdamGroup:
    name: str
    params: list[torch.Tensor]
    lr: float
    initial_lr: float = 0.0
    state: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)  # by param index


@dataclass
class _MuonGroup:
    shape: tuple[int, ...]
    params: list[torch.Tensor]
    lr: float
    initial_lr: float = 0.0
    state: dict[int, torch.Tensor] = field(default_factory=dict)  # momentum buffer by owned param index
    zero: torch.Tensor | None = None  # padding for incomplete chunks of world_size params


class _Pending:
    """A reduction in flight: `wait()` returns this rank's averaged part of the gradient."""

    def __init__(self, work, finish: Callable[[], torch.Tensor]) -> None:
        self.work, self.finish = work, finish

    def wait(self) -> torch.Tensor:
        if self.work is not None:
            self.work.wait()
        return self.finish()


class MuonAdamW:
    """Muon (matrix params) + AdamW (embedding, unembedding), averaged across ranks, globally clipped."""

    def __init__(
        self,
        param_groups: dict[str, list[torch.nn.Parameter]],
        *,
        model_dim: int,
        matrix_lr: float = 0.02,
        embedding_lr: float = 0.2,
        unembedding_lr: float = 0.004,
        betas: tuple[float, float] = (0.8, 0.95),
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        ns_steps: int = 5,
        grad_clip: float = 1.0,
        rank: int = 0,
        world_size: int = 1,
        compile: bool | None = None,
    ) -> None:
        scale = (model_dim / 768) ** -0.5  # ORIG: AdamW LRs scaled by (d_model/768)^-0.5
        self.adam = [
            _AdamGroup("embedding", list(param_groups["embedding"]), embedding_lr * scale),
            _AdamGroup("unembedding", list(param_groups["unembedding"]), unembedding_lr * scale),
        ]
        shapes: dict[tuple[int, ...], list[torch.Tensor]] = {}
        for p in param_groups["matrix"]:
            if p.ndim != 2:
                raise ValueError(f"Muon only takes 2-D parameters, got shape {tuple(p.shape)}")
            shapes.setdefault(tuple(p.shape), []).append(p)
        self.muon = [_MuonGroup(shape, ps, matrix_lr) for shape, ps in sorted(shapes.items())]
        for g in (*self.adam, *self.muon):
            g.initial_lr = g.lr
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.momentum, self.ns_steps, self.grad_clip = momentum, ns_steps, grad_clip
        self.rank, self.world_size = rank, world_size
        self.step_count = 0
        for g in self.adam:
            for p in g.params:
                if p.size(0) % world_size:
                    raise ValueError(f"{g.name}: dim 0 ({p.size(0)}) must divide by the world size ({world_size})")
        params = self.all_params()
        self.device = params[0].device if params else torch.device("cpu")
        if compile is None:
            compile = self.device.type == "cuda"
        self.compiled = bool(compile)
        self._newton_schulz = torch.compile(newton_schulz) if self.compiled else newton_schulz
        self._adamw_update = torch.compile(adamw_update) if self.compiled else adamw_update
        self.ns_dtype = newton_schulz_dtype(self.device)
        self._allocate_state()

    def _allocate_state(self) -> None:
        """Every moment and momentum buffer this rank will ever use, allocated once, zeroed."""
        W, r = self.world_size, self.rank
        for g in self.adam:
            for i, p in enumerate(g.params):
                rows = p.size(0) // W
                shape = (rows, *p.shape[1:])
                # the moments take the parameter's dtype (bf16 for ORIG's bf16 embedding on CUDA), as ORIG
                g.state[i] = {k: torch.zeros(shape, dtype=p.dtype, device=p.device) for k in ("m", "v")}
        for g in self.muon:
            g.zero = torch.zeros_like(g.params[0]) if W > 1 else None
            g.state = {i: torch.zeros_like(p) for i, p in enumerate(g.params) if i % W == r}

    # ---- schedules --------------------------------------------------------------------------
    def set_lr_multiplier(self, mult: float) -> None:
        for g in (*self.adam, *self.muon):
            g.lr = g.initial_lr * mult

    def set_momentum(self, momentum: float) -> None:
        self.momentum = momentum

    def zero_grad(self) -> None:
        for g in (*self.adam, *self.muon):
            for p in g.params:
                p.grad = None

    def all_params(self) -> list[torch.Tensor]:
        return [p for g in (*self.adam, *self.muon) for p in g.params]

    # ---- the step ---------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> torch.Tensor:
        """One update. Returns the global (pre-clip) gradient norm as a 0-d fp32 tensor (no host sync)."""
        self.step_count += 1
        # 1. launch every reduction at once (nothing waits yet)
        adam_pending = [[self._reduce_slice(p.grad) for p in g.params] for g in self.adam]
        muon_pending = [self._reduce_owned(g) for g in self.muon]
        gathers: list = []
        parts: list[torch.Tensor] = []  # this rank's synchronized gradient parts, for the norm
        clip = None
        if self.grad_clip > 0:  # the clip needs the global norm before any update
            adam_grads = [[pend.wait() for pend in row] for row in adam_pending]
            muon_grads = [[(i, pend.wait()) for i, pend in owned] for owned in muon_pending]
            parts = [gr for row in adam_grads for gr in row] + [gr for owned in muon_grads for _, gr in owned]
            grad_norm = self._global_norm(parts)
            clip = (self.grad_clip / (grad_norm + 1e-6)).clamp(max=1.0)
        else:
            adam_grads, muon_grads = adam_pending, muon_pending
        # 2. update each part as its reduction lands; launch its all-gather at once
        for g, row in zip(self.adam, adam_grads):
            for i, (p, grad) in enumerate(zip(g.params, row)):
                if clip is None:
                    grad = grad.wait()
                    parts.append(grad)
                else:
                    grad = grad * clip
                gathers.append(self._adam_update(g, i, p, grad))
        for g, owned in zip(self.muon, muon_grads):
            for base, (i, grad) in zip(range(0, len(g.params), self.world_size), self._chunked(g, owned)):
                if grad is not None:
                    if clip is None:
                        grad = grad.wait()
                        parts.append(grad)
                    else:
                        grad = grad * clip
                    self._muon_update(g, i, grad)
                gathers.append(self._gather_chunk(g, base))
        if clip is None:
            grad_norm = self._global_norm(parts)  # for the log only: off the update's critical path
        # 3. wait for the gathers
        for work in gathers:
            if work is not None:
                work.wait()
        return grad_norm

    def _global_norm(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """sqrt of the sum over ranks of this rank's sum of squares (one scalar all-reduce)."""
        if parts:
            norms = torch._foreach_norm(parts, 2, dtype=torch.float32)
            sq = torch.stack(norms).square().sum()
        else:
            sq = torch.zeros((), dtype=torch.float32, device=self.device)
        if self.world_size > 1:
            dist.all_reduce(sq, op=dist.ReduceOp.SUM)
        return sq.sqrt()

    def _chunked(self, g: _MuonGroup, owned: list) -> list[tuple[int, object]]:
        """One (index, pending gradient or None) per chunk of world_size params of the group."""
        W, r = self.world_size, self.rank
        by_index = dict(owned)
        return [(base + r, by_index.get(base + r)) for base in range(0, len(g.params), W)]

    def _adam_update(self, g: _AdamGroup, i: int, p: torch.Tensor, grad: torch.Tensor):
        W, r = self.world_size, self.rank
        rows = p.size(0) // W
        p_slice = p.data[r * rows : (r + 1) * rows]
        st = g.state[i]
        b1, b2 = self.betas
        t = torch.tensor(self.step_count, dtype=torch.int64)
        # ORIG: bias corrections as fp32 tensors, step size lr * sqrt(1 - b2^t) / (1 - b1^t)
        step_size = (g.lr * (torch.sqrt(1 - b2**t) / (1 - b1**t))).to(p.device)
        decay = torch.tensor(1 - g.lr * self.weight_decay, dtype=torch.float32, device=p.device)
        self._adamw_update(p_slice, grad.to(p.dtype), st["m"], st["v"], step_size, decay, b1, b2, self.eps)
        if W > 1:
            return _all_gather_rows(p.data, p_slice)
        return None

    def _muon_update(self, g: _MuonGroup, i: int, grad: torch.Tensor) -> None:
        p = g.params[i]
        buf = g.state[i]
        buf.lerp_(grad, 1 - self.momentum)
        grad = grad.lerp(buf, self.momentum)  # Nesterov
        update = self._newton_schulz(grad, self.ns_steps, dtype=self.ns_dtype)
        rows, cols = p.shape
        p.data.add_(update.to(p.dtype), alpha=-g.lr * math.sqrt(max(1.0, rows / cols)))

    # ---- communication (asynchronous) -------------------------------------------------------------
    def _reduce_slice(self, grad: torch.Tensor) -> _Pending:
        """The rank's dim-0 slice of the cross-rank mean gradient, in flight."""
        W, r = self.world_size, self.rank
        if W == 1:
            return _Pending(None, lambda: grad)
        rows = grad.size(0) // W
        if dist.get_backend() == "nccl":
            out = torch.empty_like(grad[:rows])
            work = dist.reduce_scatter_tensor(out, grad.contiguous(), op=dist.ReduceOp.AVG, async_op=True)
            return _Pending(work, lambda: out)
        full = grad.clone()  # gloo has no reduce-scatter: all-reduce the whole gradient, keep the slice
        work = dist.all_reduce(full, op=dist.ReduceOp.SUM, async_op=True)
        return _Pending(work, lambda: full[r * rows : (r + 1) * rows] / W)

    def _reduce_owned(self, g: _MuonGroup) -> list[tuple[int, _Pending]]:
        """Mean gradients of the group's params this rank owns (block-cyclic assignment), in flight."""
        W, r = self.world_size, self.rank
        if W == 1:
            return [(i, _Pending(None, lambda p=p: p.grad)) for i, p in enumerate(g.params)]
        owned = []
        for base in range(0, len(g.params), W):
            chunk = g.params[base : base + W]
            grads = [p.grad for p in chunk] + [g.zero] * (W - len(chunk))
            if dist.get_backend() == "nccl":
                out = torch.empty_like(g.zero)
                work = dist.reduce_scatter(out, grads, op=dist.ReduceOp.AVG, async_op=True)
                pending = _Pending(work, lambda out=out: out)
            else:  # gloo: all-reduce each gradient of the chunk, keep the one this rank owns
                summed = [gr.clone() for gr in grads]
                works = [dist.all_reduce(s, op=dist.ReduceOp.SUM, async_op=True) for s in summed]
                pending = _Pending(_WaitAll(works), lambda s=summed[r]: s / W)
            if base + r < len(g.params):
                owned.append((base + r, pending))
            else:  # this rank owns nothing in the chunk, but its collective must still complete
                pending.wait()
        return owned

    def _gather_chunk(self, g: _MuonGroup, base: int):
        """Launch the all-gather that hands every rank the chunk's updated matrices."""
        W, r = self.world_size, self.rank
        if W == 1:
            return None
        chunk = [p.data for p in g.params[base : base + W]]
        outputs = chunk + [torch.empty_like(g.zero) for _ in range(W - len(chunk))]
        source = outputs[r] if dist.get_backend() == "nccl" else outputs[r].clone()
        return dist.all_gather(outputs, source, async_op=True)

    # ---- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """This rank's shard of the optimizer state (save one file per rank)."""
        return {
            "step_count": self.step_count,
            "momentum": self.momentum,
            "world_size": self.world_size,
            "adam": {g.name: {i: {k: v.cpu() for k, v in s.items()} for i, s in g.state.items()} for g in self.adam},
            "muon": {str(g.shape): {i: b.cpu() for i, b in g.state.items()} for g in self.muon},
            "lrs": [g.lr for g in (*self.adam, *self.muon)],
        }

    def load_state_dict(self, state: dict) -> None:
        """Copy a saved shard into the buffers allocated at construction (missing entries stay zero)."""
        if state["world_size"] != self.world_size:
            raise ValueError(
                f"optimizer state was saved with {state['world_size']} ranks; this run has {self.world_size}"
            )
        self.step_count = state["step_count"]
        self.momentum = state["momentum"]
        for g in self.adam:
            saved = {int(i): s for i, s in state["adam"][g.name].items()}
            for i, st in g.state.items():
                for k, buf in st.items():
                    _load_into(buf, saved.get(i, {}).get(k), f"adam {g.name}[{i}].{k}")
        for g in self.muon:
            saved = {int(i): b for i, b in state["muon"][str(g.shape)].items()}
            for i, buf in g.state.items():
                _load_into(buf, saved.get(i), f"muon {g.shape}[{i}]")
        for g, lr in zip((*self.adam, *self.muon), state["lrs"]):
            g.lr = lr


def _load_into(buf: torch.Tensor, saved: torch.Tensor | None, what: str) -> None:
    if saved is None:
        buf.zero_()
        return
    if tuple(saved.shape) != tuple(buf.shape):
        raise ValueError(f"optimizer state {what}: saved shape {tuple(saved.shape)}, expected {tuple(buf.shape)}")
    buf.copy_(saved)


class _WaitAll:
    def __init__(self, works: list) -> None:
        self.works = works

    def wait(self) -> None:
        for w in self.works:
            w.wait()


def _all_gather_rows(full: torch.Tensor, mine: torch.Tensor):
    """Launch the reassembly of a dim-0-sharded tensor on every rank; returns the work to wait on."""
    if dist.get_backend() == "nccl":
        return dist.all_gather_into_tensor(full, mine.contiguous(), async_op=True)
    W = dist.get_world_size()
    parts = list(full.chunk(W, dim=0))
    return dist.all_gather(parts, mine.clone(), async_op=True)
