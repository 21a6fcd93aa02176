"""The ORIG optimizer pair, as one object: Muon for block matrices, AdamW for the embeddings.

One code path serves 1 and N processes, so the math is identical however the work is spread:
1. every rank's gradients are averaged across ranks (reduce-scatter: each rank receives only the part
   it updates — its slice of each AdamW matrix, and whole Muon matrices assigned block-cyclically
   within each same-shape group);
2. the global gradient norm is computed from those synchronized parts and clipped (ORIG clipped
   per-rank, unsynchronized gradients; that was a bug and is fixed here);
3. each rank updates what it owns (sharded optimizer state, ZeRO-2 style);
4. updated parameters are all-gathered.
There is no DDP wrapper: this optimizer does the gradient averaging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(G: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximately orthogonalize a (batch of) matrix with the quintic Newton–Schulz iteration.

    Normalized by the Frobenius norm first; tall matrices are processed transposed. Runs in bf16 on
    CUDA as ORIG does; on the CPU in fp32, because CPUs without native bf16 matmul emulate it ~30x slower.
    """
    a, b, c = NS_COEFFS
    if dtype is None:
        dtype = torch.bfloat16 if G.is_cuda else torch.float32
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
    state: dict[int, torch.Tensor] = field(default_factory=dict)  # momentum buffer by param index


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
        """One update. Returns the global (pre-clip) gradient norm as a 0-d tensor (no host sync)."""
        self.step_count += 1
        W = self.world_size
        adam_grads = [[self._reduce_slice(p.grad) for p in g.params] for g in self.adam]
        muon_grads = [self._reduce_owned(g) for g in self.muon]

        sq = [gr.float().square().sum() for grads in adam_grads for gr in grads]
        sq += [gr.float().square().sum() for owned in muon_grads for _, gr in owned]
        device = self.all_params()[0].device
        norm_sq = torch.stack(sq).sum() if sq else torch.zeros((), device=device)
        if W > 1:
            dist.all_reduce(norm_sq, op=dist.ReduceOp.SUM)
        grad_norm = norm_sq.sqrt()
        clip = (self.grad_clip / (grad_norm + 1e-6)).clamp(max=1.0) if self.grad_clip > 0 else None

        for g, grads in zip(self.adam, adam_grads):
            for i, (p, grad) in enumerate(zip(g.params, grads)):
                if clip is not None:
                    grad = grad * clip.to(grad.dtype)
                self._adam_update(g, i, p, grad)
        for g, owned in zip(self.muon, muon_grads):
            for i, grad in owned:
                if clip is not None:
                    grad = grad * clip.to(grad.dtype)
                self._muon_update(g, i, grad)
            self._gather_owned(g)
        return grad_norm

    def _adam_update(self, g: _AdamGroup, i: int, p: torch.Tensor, grad: torch.Tensor) -> None:
        W, r = self.world_size, self.rank
        rows = p.size(0) // W
        p_slice = p.data[r * rows : (r + 1) * rows] if W > 1 else p.data
        st = g.state.setdefault(i, {"m": torch.zeros_like(p_slice, dtype=torch.float32), "v": torch.zeros_like(p_slice, dtype=torch.float32)})
        b1, b2 = self.betas
        t = self.step_count
        grad = grad.float()
        st["m"].lerp_(grad, 1 - b1)
        st["v"].lerp_(grad.square(), 1 - b2)
        denom = (st["v"] / (1 - b2**t)).sqrt_().add_(self.eps)
        update = (st["m"] / (1 - b1**t)) / denom
        new = p_slice.float()
        if self.weight_decay:
            new.mul_(1 - g.lr * self.weight_decay)
        new.add_(update, alpha=-g.lr)
        p_slice.copy_(new.to(p_slice.dtype))
        if W > 1:
            _all_gather_rows(p.data, p_slice)

    def _muon_update(self, g: _MuonGroup, i: int, grad: torch.Tensor) -> None:
        p = g.params[i]
        buf = g.state.setdefault(i, torch.zeros_like(grad))
        buf.lerp_(grad, 1 - self.momentum)
        grad = grad.lerp(buf, self.momentum)  # Nesterov
        update = newton_schulz(grad, self.ns_steps)
        rows, cols = p.shape
        p.data.add_(update.to(p.dtype), alpha=-g.lr * math.sqrt(max(1.0, rows / cols)))

    # ---- communication --------------------------------------------------------------------------
    def _reduce_slice(self, grad: torch.Tensor) -> torch.Tensor:
        """The rank's dim-0 slice of the cross-rank mean gradient."""
        W = self.world_size
        if W == 1:
            return grad
        rows = grad.size(0) // W
        if dist.get_backend() == "nccl":
            out = torch.empty_like(grad[:rows])
            dist.reduce_scatter_tensor(out, grad.contiguous(), op=dist.ReduceOp.AVG)
            return out
        full = grad.clone()
        dist.all_reduce(full, op=dist.ReduceOp.SUM)
        return full[self.rank * rows : (self.rank + 1) * rows] / W

    def _owners(self, g: _MuonGroup) -> list[int]:
        return [i % self.world_size for i in range(len(g.params))]

    def _reduce_owned(self, g: _MuonGroup) -> list[tuple[int, torch.Tensor]]:
        """Mean gradients of the group's params this rank owns (block-cyclic assignment)."""
        W, r = self.world_size, self.rank
        if W == 1:
            return [(i, p.grad) for i, p in enumerate(g.params)]
        owned = []
        for base in range(0, len(g.params), W):
            chunk = g.params[base : base + W]
            grads = [p.grad for p in chunk] + [torch.zeros_like(chunk[0].grad)] * (W - len(chunk))
            if dist.get_backend() == "nccl":
                out = torch.empty_like(grads[0])
                dist.reduce_scatter(out, grads, op=dist.ReduceOp.AVG)
                mine = out
            else:
                mine = None
                for k, gr in enumerate(grads):
                    summed = gr.clone()
                    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
                    if k == r:
                        mine = summed / W
            if base + r < len(g.params):
                owned.append((base + r, mine))
        return owned

    def _gather_owned(self, g: _MuonGroup) -> None:
        W, r = self.world_size, self.rank
        if W == 1:
            return
        for base in range(0, len(g.params), W):
            chunk = [p.data for p in g.params[base : base + W]]
            pad = [torch.empty_like(chunk[0]) for _ in range(W - len(chunk))]
            outputs = chunk + pad
            source = outputs[r].clone()
            dist.all_gather(outputs, source)

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
        if state["world_size"] != self.world_size:
            raise ValueError(
                f"optimizer state was saved with {state['world_size']} ranks; this run has {self.world_size}"
            )
        self.step_count = state["step_count"]
        self.momentum = state["momentum"]
        for g in self.adam:
            dev = g.params[0].device
            g.state = {int(i): {k: v.to(dev) for k, v in s.items()} for i, s in state["adam"][g.name].items()}
        for g in self.muon:
            dev = g.params[0].device
            g.state = {int(i): b.to(dev) for i, b in state["muon"][str(g.shape)].items()}
        for g, lr in zip((*self.adam, *self.muon), state["lrs"]):
            g.lr = lr


def _all_gather_rows(full: torch.Tensor, mine: torch.Tensor) -> None:
    """Reassemble a dim-0-sharded tensor on every rank."""
    if dist.get_backend() == "nccl":
        dist.all_gather_into_tensor(full, mine.contiguous())
        return
    W = dist.get_world_size()
    parts = list(full.chunk(W, dim=0))
    dist.all_gather(parts, mine.clone())
