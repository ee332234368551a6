"""MLP language model after Bengio et al. 2003: embed the last `block_size` tokens, concatenate
the embeddings, one tanh hidden layer, then logits for the next token.

It predicts every position of a sequence at once: position t sees the `context` tokens up to t
(context defaults to block_size),
with a `blank` token (an extra row of the embedding table) standing in before the start.
BatchNorm (optional) normalises the hidden layer over the positions that have a target, so
padding changes nothing.
"""
import torch
import torch.nn as nn

from nanostack.models.bigram import sequence_loss
from nanostack.models.base import LanguageModel
from nanostack.models.config import ModelConfig


def contexts(idx, width: int, blank: int):
    """(B, T, width): for each position, the `width` tokens up to and including it, blanks before the start."""
    padded = nn.functional.pad(idx, (width - 1, 0), value=blank)
    return padded.unfold(1, width, 1)


class MaskedBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last axis whose batch statistics come only from the rows where mask is true."""

    def forward(self, x, mask=None):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        if not self.training or mask is None:
            return super().forward(x).reshape(shape)
        mask = mask.reshape(-1)
        out = torch.zeros_like(x)  # padded rows stay 0: their targets are ignored anyway
        out[mask] = super().forward(x[mask])  # statistics, and running statistics, from the real rows only
        return out.reshape(shape)


class MLP(LanguageModel):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size + 1, config.n_embd)  # + the blank token
        self.hidden = nn.Linear(config.context_width * config.n_embd, config.n_embd2, bias=not config.batchnorm)
        self.norm = MaskedBatchNorm(config.n_embd2) if config.batchnorm else None
        self.act = nn.Tanh()  # a module, so probes can hook it
        self.lm_head = nn.Linear(config.n_embd2, config.vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        emb = self.wte(contexts(idx, self.config.context_width, self.config.vocab_size))  # (B, T, context, n_embd)
        h = self.hidden(emb.reshape(B, T, -1))
        if self.norm is not None:
            h = self.norm(h, None if targets is None else targets != -1)
        logits = self.lm_head(self.act(h))
        return logits, None if targets is None else sequence_loss(logits, targets)
