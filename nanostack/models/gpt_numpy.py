"""The GPT of gpt.py again, built only from nanostack.grad's numpy Tensor: the reference twin.

Same architecture, same parameter names, same initialisation scheme, so a state dict moves
between the two as plain arrays (tests/test_gpt_numpy.py checks that loss and every gradient
agree with the torch model in float64). Training is slower than torch's, not different. It imports
no torch: models/engines.py puts it behind the sampler's torch interface.
"""
import math

import numpy as np

from nanostack.errors import UserError
from nanostack.grad import functional as F
from nanostack.grad import nn
from nanostack.models.config import ModelConfig as GPTConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, dtype):
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias, dtype=dtype)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias, dtype=dtype)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        # True above the diagonal: the future, which a position may not attend to
        self.future = np.triu(np.ones((config.block_size, config.block_size), dtype=bool), k=1)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, axis=2)
        q, k, v = (t.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // self.n_head))
        att = F.softmax(att.masked_fill(self.future[:T, :T], -np.inf), axis=-1)
        y = self.attn_dropout(att) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig, dtype):
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias, dtype=dtype)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias, dtype=dtype)
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"  # as gpt.py

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, dtype):
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias, dtype=dtype)
        self.attn = CausalSelfAttention(config, dtype)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias, dtype=dtype)
        self.mlp = MLP(config, dtype)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NumpyGPT(nn.Module):
    def __init__(self, config: GPTConfig, dtype=np.float32):
        if config.modern_options():  # the twin is GPT-2's architecture only
            raise UserError(f"the numpy GPT has none of the modern options ({', '.join(config.modern_options())})",
                            "use --backend torch for a model with them")
        self.config = config
        self.transformer = dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd, dtype=dtype),
            wpe=nn.Embedding(config.block_size, config.n_embd, dtype=dtype),
            drop=nn.Dropout(config.dropout),
            h=[Block(config, dtype) for _ in range(config.n_layer)],
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias, dtype=dtype),
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False, dtype=dtype)
        self.lm_head.weight = self.transformer["wte"].weight  # weight tying
        for name, p in self.named_parameters():  # GPT-2's init, as gpt.py
            if name.endswith(".bias"):
                p.data[...] = 0
            elif p.ndim == 2:
                std = 0.02 / math.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else 0.02
                p.data[...] = nn.init_generator.normal(0.0, std, p.shape)

    def forward(self, idx, targets=None):
        """logits (B, T, vocab) and the mean cross-entropy if targets is given (-1 = ignore).
        idx and targets are integer arrays (numpy, or torch CPU tensors). Without targets, only the last
        position's logits."""
        idx = np.asarray(idx)
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        wte, wpe = self.transformer["wte"], self.transformer["wpe"]
        x = self.transformer["drop"](wte(idx) + wpe.weight[:T])
        for block in self.transformer["h"]:
            x = block(x)
        x = self.transformer["ln_f"](x)
        if targets is None:
            return self.lm_head(x[:, -1:, :]), None
        logits = self.lm_head(x)
        return logits, F.cross_entropy(logits, targets, ignore_index=-1)


def to_tensor_dict(model: NumpyGPT) -> dict:
    """Weights as {name: numpy array}, the tied embedding once, under lm_head.weight, as torch's
    safetensors.save_model stores it: files from the two engines are alike."""
    return {name: p.data for name, p in model.named_parameters(keep_duplicates=True)
            if name != "transformer.wte.weight"}

