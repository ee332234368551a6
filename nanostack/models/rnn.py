"""Recurrent language models: a hidden state carried from token to token.

The cells are written out, gate by gate, with torch's parameter layout (weight_ih, weight_hh,
bias_ih, bias_hh, gates stacked in torch's order), so each equals torch's RNNCell, GRUCell or
LSTMCell given the same weights (tests/test_makemore.py checks it).
"""
import torch
import torch.nn as nn

from nanostack.models.bigram import sequence_loss
from nanostack.models.base import LanguageModel
from nanostack.models.config import ModelConfig


class CellParameters(nn.Module):
    """Input and hidden weights for `gates` gates of width hidden_size, stacked as torch stacks them."""

    def __init__(self, input_size, hidden_size, gates):
        super().__init__()
        bound = hidden_size ** -0.5  # torch's init: U(-1/sqrt(hidden), 1/sqrt(hidden))
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(gates * hidden_size).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(gates * hidden_size).uniform_(-bound, bound))
        self.tanh, self.sigmoid = nn.Tanh(), nn.Sigmoid()  # modules, so probes can hook them

    def gates(self, x, h):
        """(input part, hidden part) of every gate's pre-activation."""
        return x @ self.weight_ih.T + self.bias_ih, h @ self.weight_hh.T + self.bias_hh


class RNNCell(CellParameters):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh)"""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size, 1)

    def forward(self, x, h):
        gx, gh = self.gates(x, h)
        return self.tanh(gx + gh)


class GRUCell(CellParameters):
    """r = σ(reset), z = σ(update), n = tanh(x part + r * h part), h' = (1 - z) * n + z * h"""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size, 3)

    def forward(self, x, h):
        gx, gh = self.gates(x, h)
        rx, zx, nx = gx.chunk(3, dim=-1)
        rh, zh, nh = gh.chunk(3, dim=-1)
        r = self.sigmoid(rx + rh)  # how much of the old state the candidate may read
        z = self.sigmoid(zx + zh)  # how much of the old state to keep
        n = self.tanh(nx + r * nh)
        return (1 - z) * n + z * h


class LSTMCell(CellParameters):
    """i, f, o = σ(...), g = tanh(...); c' = f * c + i * g; h' = o * tanh(c'). State is (h, c)."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size, 4)

    def forward(self, x, state):
        h, c = state
        gx, gh = self.gates(x, h)
        i, f, g, o = (gx + gh).chunk(4, dim=-1)
        c = self.sigmoid(f) * c + self.sigmoid(i) * self.tanh(g)  # forget some memory, write some new
        return self.sigmoid(o) * self.tanh(c), c


CELLS = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}


class RNN(LanguageModel):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.cell = CELLS[config.kind](config.n_embd, config.n_embd2)
        self.start = nn.Parameter(torch.zeros(1, config.n_embd2))  # the learned state before the first token
        self.lm_head = nn.Linear(config.n_embd2, config.vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        emb = self.wte(idx)
        h = self.start.expand(B, -1)
        state = (h, torch.zeros_like(h)) if self.config.kind == "lstm" else h
        hiddens = []
        for t in range(T):
            state = self.cell(emb[:, t], state)
            hiddens.append(state[0] if self.config.kind == "lstm" else state)
        logits = self.lm_head(torch.stack(hiddens, 1))
        return logits, None if targets is None else sequence_loss(logits, targets)
