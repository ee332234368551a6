"""Bigram models: the next token depends on the current one only.

BigramCounts is the classic table: count how often each token follows each other token in the
training data, add `smoothing` to every count (so nothing has probability zero), and normalise
the rows. It is fitted by counting, not by gradient descent. Bigram is the same table as
parameters (logits), learned by gradient descent; with enough steps it converges to the counts.
"""
import torch
import torch.nn as nn
from torch.nn import functional as F

from nanostack.models.base import LanguageModel
from nanostack.models.config import ModelConfig


def sequence_loss(logits, targets):
    """Mean cross-entropy over the positions whose target is not -1 (padding)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)


class BigramCounts(LanguageModel):
    learns_by_counting = True

    def __init__(self, config: ModelConfig, smoothing: float = 1.0):
        super().__init__()
        self.config = config
        self.smoothing = smoothing
        self.register_buffer("counts", torch.zeros(config.vocab_size, config.vocab_size))

    def fit(self, x, y) -> None:
        """Count every (current, next) pair of the training data; padded targets (-1) count for nothing."""
        keep = y != -1
        pairs = x[keep] * self.config.vocab_size + y[keep]
        counts = torch.bincount(pairs, minlength=self.config.vocab_size ** 2).float()
        self.counts.copy_(counts.view(self.config.vocab_size, self.config.vocab_size))

    def forward(self, idx, targets=None):
        probs = self.counts + self.smoothing
        logits = (probs / probs.sum(dim=1, keepdim=True)).log()[idx]  # log-probabilities are valid logits
        return logits, None if targets is None else sequence_loss(logits, targets)


class Bigram(LanguageModel):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.logits = nn.Parameter(torch.zeros(config.vocab_size, config.vocab_size))

    def forward(self, idx, targets=None):
        logits = self.logits[idx]
        return logits, None if targets is None else sequence_loss(logits, targets)
