"""AdamW with weight decay on matrices and embeddings only (not on biases or LayerNorm gains)."""
import torch


def make_optimizer(model, learning_rate, weight_decay, betas, device_type):
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # one fused kernel for all parameters on CUDA and CPU; the multi-tensor path elsewhere
    fast = {"fused": True} if device_type in ("cuda", "cpu") else {"foreach": True}
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **fast)
