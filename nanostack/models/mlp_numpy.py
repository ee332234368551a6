"""The MLP of mlp.py (Bengio et al. 2003) on nanostack.grad's numpy Tensor: the reference twin.

Same parameter names and shapes as mlp.MLP without BatchNorm, so weights move between the two
(tests/test_gpt_numpy.py checks loss and gradients against the torch model).
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nanostack.grad import functional as F
from nanostack.grad import nn
from nanostack.models.config import ModelConfig


class NumpyMLP(nn.Module):
    def __init__(self, config: ModelConfig, dtype=np.float32):
        if config.batchnorm:
            raise ValueError("the numpy MLP has no BatchNorm")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size + 1, config.n_embd, dtype=dtype)  # + the blank token
        self.hidden = nn.Linear(config.context_width * config.n_embd, config.n_embd2, dtype=dtype)
        self.lm_head = nn.Linear(config.n_embd2, config.vocab_size, dtype=dtype)

    def forward(self, idx, targets=None):
        idx = np.asarray(idx)
        B, T = idx.shape
        width, blank = self.config.context_width, self.config.vocab_size
        padded = np.pad(idx, ((0, 0), (width - 1, 0)), constant_values=blank)
        windows = sliding_window_view(padded, width, axis=1)  # (B, T, width): each position's context
        emb = self.wte(windows)
        logits = self.lm_head(self.hidden(emb.reshape(B, T, -1)).tanh())
        return logits, None if targets is None else F.cross_entropy(logits, targets, ignore_index=-1)
