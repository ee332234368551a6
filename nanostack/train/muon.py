"""Muon: momentum whose update for each hidden weight matrix is orthogonalised, with AdamW for the rest.

For a weight matrix W with gradient G, Muon keeps a momentum M = mu*M + G (and looks ahead, Nesterov
style, to G + mu*M), then replaces that update U = A S B^T by its orthogonal part A B^T: every
direction the update moves W in gets the same step size, so rare directions are not drowned by the
few dominant ones. A B^T is approximated by a few Newton-Schulz iterations X <- aX + b(XX^T)X +
c(XX^T)^2 X, an odd matrix polynomial that pushes each singular value of X towards 1 and leaves the
singular vectors alone, using matrix products only (no SVD). The coefficients are the published
quintic of Keller Jordan's Muon (a=3.4445, b=-4.7750, c=2.0315): steep at 0, so small singular
values grow fast, at the price of ending in roughly [0.7, 1.2] instead of exactly 1. The iteration
runs in bfloat16 where matrix products are fast in it (CUDA; CPUs with AMX or AVX512-BF16: 2-3x
faster than float32 there) and in float32 elsewhere; matrices of one shape go through it as one batch.

Muon is for the 2-D matrices inside the transformer blocks. Embeddings, the head, norms and biases
are not hidden matrices (a lookup table, a classifier, vectors), and AdamW trains them; `MuonAdamW`
holds both optimizers behind one optimizer surface (param_groups, step, zero_grad, state_dict).
Each param group carries "lr_scale": the trainer's schedule gives the AdamW learning rate, and a
group's lr is that times its scale, so Muon's rate follows the same warmup and decay at its own peak.
What it does not know: distributed training (each rank would orthogonalise every matrix itself).
"""
import functools
from collections import defaultdict

import torch

NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


@torch.no_grad()
def orthogonalize(g: torch.Tensor, steps: int = 5, dtype=torch.float32, eps: float = 1e-7) -> torch.Tensor:
    """An approximation of U V^T for g = U S V^T; g may be a batch of matrices (..., rows, cols).
    The iteration runs in `dtype` (bfloat16 is accurate enough, and twice as fast where matmuls have it)."""
    x = g.reshape(-1, *g.shape[-2:]).to(dtype)
    wide = x.size(-2) <= x.size(-1)
    if not wide:  # iterate on the smaller Gram matrix X X^T
        x = x.mT
    # divide by the Frobenius norm: every singular value is then at most 1, where the iteration converges
    x = x / (torch.linalg.matrix_norm(x.float(), keepdim=True) + eps).to(dtype)
    a, b, c = NEWTON_SCHULZ
    for _ in range(steps):
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b*G + c*G@G
        x = torch.baddbmm(x, poly, x, beta=a)                   # a*X + poly@X
    return (x if wide else x.mT).reshape(g.shape).to(g.dtype)


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products are fast on this device (CUDA, or a CPU with AMX or AVX512-BF16)."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(cpu_features() & {"amx_bf16", "avx512_bf16"})


@functools.cache
def cpu_features() -> frozenset:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:  # not Linux: assume nothing
        return frozenset()
    return frozenset(flags.split(":", 1)[-1].split())


class Muon(torch.optim.Optimizer):
    """Orthogonalised momentum for 2-D parameters; decoupled weight decay p <- p * (1 - lr * weight_decay).

    The step is lr * max(1, rows/cols)^0.5 * orthogonalize(update): an orthogonal matrix has unit
    singular values whatever its shape, and the factor gives tall matrices (more outputs than inputs)
    the same per-entry step size as square ones.
    """

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, ns_steps=5):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      ns_steps=ns_steps))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon trains matrices, got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            mu = group["momentum"]
            by_shape = defaultdict(list)  # matrices of one shape are orthogonalised together, in one batch
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(p.grad)
                by_shape[p.shape].append((p, p.grad.add(buf, alpha=mu) if group["nesterov"] else buf))
            for (rows, cols), items in by_shape.items():
                stacked = torch.stack([u for _, u in items])
                dtype = torch.bfloat16 if fast_bf16(stacked.device) else torch.float32
                updates = orthogonalize(stacked, group["ns_steps"], dtype)
                scale = max(1.0, rows / cols) ** 0.5
                for (p, _), update in zip(items, updates.unbind(0)):
                    if group["weight_decay"]:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update, alpha=-group["lr"] * scale)


def hidden_matrices(model) -> list:
    """The names of the GPT's parameters Muon trains: the 2-D weights inside the transformer blocks."""
    return [name for name, p in model.named_parameters()
            if p.requires_grad and p.dim() == 2 and name.startswith("transformer.h.")]


class MuonAdamW:
    """Muon for the hidden matrices and AdamW for every other parameter, as one optimizer."""

    def __init__(self, muon: Muon, adamw: torch.optim.AdamW):
        self.muon, self.adamw = muon, adamw

    @property
    def param_groups(self) -> list:
        return self.muon.param_groups + self.adamw.param_groups

    def step(self):
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True):
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict):
        scales = [group["lr_scale"] for group in self.param_groups]  # this run's settings win over the saved ones
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])
        for group, scale in zip(self.param_groups, scales):
            group["lr_scale"] = scale


def make_muon_adamw(model, learning_rate, muon_lr, momentum, weight_decay, betas, device_type) -> MuonAdamW:
    """Muon at peak rate muon_lr on the hidden matrices; AdamW at learning_rate on the rest, with weight
    decay on the embeddings and an untied head but not on norms and biases."""
    hidden = set(hidden_matrices(model))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    rest = [p for n, p in named if n not in hidden]
    muon = Muon([p for n, p in named if n in hidden], lr=muon_lr, momentum=momentum, weight_decay=weight_decay)
    muon.param_groups[0]["lr_scale"] = muon_lr / learning_rate if learning_rate > 0 else 0.0
    fast = {"fused": True} if device_type in ("cuda", "cpu") else {"foreach": True}
    adamw = torch.optim.AdamW([{"params": [p for p in rest if p.dim() >= 2], "weight_decay": weight_decay},
                               {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}],
                              lr=learning_rate, betas=betas, **fast)
    for group in adamw.param_groups:
        group["lr_scale"] = 1.0
    return MuonAdamW(muon, adamw)
