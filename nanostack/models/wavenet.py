"""WaveNet-style hierarchical MLP (van den Oord et al. 2016, as in the makemore lectures).

Instead of squashing the whole context into one hidden layer at once (mlp.py), it fuses it
slowly: embed the last `block_size` tokens, join neighbours in pairs and apply Linear + tanh,
then join those in pairs again, and so on, until one vector remains: a tree of depth
log2(context). The context (default: block_size) is rounded up to a power of two; blank tokens
pad the start.
"""
import torch
import torch.nn as nn

from nanostack.models.bigram import sequence_loss
from nanostack.models.base import LanguageModel
from nanostack.models.config import ModelConfig
from nanostack.models.mlp import MaskedBatchNorm, contexts


class WaveNet(LanguageModel):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.width = 1 << max(1, (config.context_width - 1).bit_length())  # context read: a power of two
        self.wte = nn.Embedding(config.vocab_size + 1, config.n_embd)  # + the blank token
        levels = self.width.bit_length() - 1
        sizes = [config.n_embd] + [config.n_embd2] * levels
        self.fuse = nn.ModuleList(nn.Linear(2 * sizes[i], sizes[i + 1], bias=not config.batchnorm)
                                  for i in range(levels))
        self.norms = nn.ModuleList(MaskedBatchNorm(config.n_embd2) for _ in range(levels)) if config.batchnorm \
            else None
        self.acts = nn.ModuleList(nn.Tanh() for _ in range(levels))  # modules, so probes can hook each level
        self.lm_head = nn.Linear(config.n_embd2, config.vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        mask = None if targets is None else targets != -1
        x = self.wte(contexts(idx, self.width, self.config.vocab_size))  # (B, T, width, n_embd)
        for level, fuse in enumerate(self.fuse):
            n, c = x.shape[2], x.shape[3]
            x = fuse(x.reshape(B, T, n // 2, 2 * c))  # neighbours in pairs
            if self.norms is not None:
                x = self.norms[level](x, None if mask is None else mask[:, :, None].expand(B, T, n // 2))
            x = self.acts[level](x)
        logits = self.lm_head(x[:, :, 0])
        return logits, None if targets is None else sequence_loss(logits, targets)
