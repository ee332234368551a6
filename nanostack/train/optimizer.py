"""AdamW with weight decay on matrices and embeddings only (not on biases or LayerNorm gains),
for either engine: torch's fused AdamW, or nanostack.grad's; or (torch, kind "muon") Muon for the
transformer's hidden matrices and AdamW for the rest (muon.py)."""
import torch

from nanostack.grad import optim as grad_optim
from nanostack.train.muon import make_muon_adamw


def decay_groups(params, weight_decay: float) -> list:
    """Parameter groups: weight decay on tensors of 2 and more dimensions, none on the rest."""
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def make_optimizer(model, learning_rate, weight_decay, betas, device_type, numpy=False, kind="adamw", muon_lr=0.02,
                   muon_momentum=0.95):
    if kind == "muon":
        return make_muon_adamw(model, learning_rate, muon_lr, muon_momentum, weight_decay, betas, device_type)
    if numpy:
        return grad_optim.AdamW(decay_groups(model.parameters(), weight_decay), lr=learning_rate, betas=betas)
    params = [p for p in model.parameters() if p.requires_grad]
    # one fused kernel for all parameters on CUDA and CPU; the multi-tensor path elsewhere
    fast = {"fused": True} if device_type in ("cuda", "cpu") else {"foreach": True}
    return torch.optim.AdamW(decay_groups(params, weight_decay), lr=learning_rate, betas=betas, **fast)
