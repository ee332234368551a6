"""Rotary position embeddings (RoPE, Su et al. 2021): position enters attention as a rotation.

Each head's query and key vectors are cut into two halves, read as pairs (x1[i], x2[i]), and
pair i at position p is rotated by the angle p * base^(-2i/head_dim). A query at position m and
a key at position n then meet through a rotation by (m - n) only: attention sees relative
positions, and no position table is learned. Keys are rotated before they enter the KV cache,
so cached keys keep their positions and a cached step equals a full forward pass.
"""
import torch
import torch.nn as nn


class Rotary(nn.Module):
    """The cos/sin tables for positions 0..block_size-1; not weights, so not in the state dict."""

    def __init__(self, head_dim: int, block_size: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {head_dim}")
        inv_freq = base ** -(torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(block_size, dtype=torch.float64), inv_freq)  # (block_size, head_dim/2)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, pos: torch.Tensor):
        """(cos, sin) at positions pos (T,) or (B, T) (a server's rows at their own places): (*pos.shape, head_dim/2)."""
        return self.cos[pos], self.sin[pos]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., T, head_dim) pairwise: pair i of position t by the angle whose cos/sin are cos[t, i], sin[t, i]."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
