"""GPT: a decoder-only transformer in one file (GPT-2's architecture, sized by GPTConfig).

Token + position embeddings, pre-LayerNorm blocks of causal self-attention and a GELU MLP,
a final LayerNorm and a language-model head that shares its weights with the token embedding.
Parameter names match nanoGPT's (and so GPT-2's checkpoints, transposed where GPT-2 uses Conv1D).

Modern options (ModelConfig; all off by default, and then the model is exactly the one above):
rotary position embeddings instead of the learned wpe, RMSNorm instead of LayerNorm, RMSNorm on
queries and keys (QK-norm), GPT-2's tanh GELU or ReLU² in the MLP, a head untied from the
embedding, and output projections that start at zero (each block then starts as the identity).
"""
import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from nanostack.errors import UserError
from nanostack.models.base import LanguageModel
from nanostack.models.chunked_loss import linear_cross_entropy
from nanostack.models.config import ACTIVATIONS, ModelConfig
from nanostack.models.generation import generate
from nanostack.models.kv_rows import RowKVCache
from nanostack.models.rotary import Rotary, apply_rotary


GPTConfig = ModelConfig  # the GPT reads vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias
#                          and the modern options


def make_norm(config: GPTConfig, width: int) -> nn.Module:
    return nn.RMSNorm(width, eps=1e-5) if config.rmsnorm else nn.LayerNorm(width, bias=config.bias)


class ReLUSquared(nn.Module):
    def forward(self, x):
        return F.relu(x).square()


def make_activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()  # exact (erf) GELU: 3-4x faster than the tanh approximation on CPUs
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")  # GPT-2's own (Hugging Face's gelu_new)
    if name == "relu2":
        return ReLUSquared()
    raise UserError(f"unknown activation {name!r}", f"use one of: {', '.join(ACTIVATIONS)}")


class KVCache:
    """Keys and values of the tokens seen so far, for every layer, in preallocated buffers.

    Generation feeds the prompt once (prefill), then one token per step; each step attends to
    the cached keys and values instead of recomputing them, turning O(T^2) work per token into O(T).
    """

    def __init__(self, config: GPTConfig, batch_size: int, device, dtype):
        head_dim = config.n_embd // config.n_head
        shape = (config.n_layer, 2, batch_size, config.n_head, config.block_size, head_dim)
        self.buffers = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0  # tokens cached so far; also the position of the next token
        self.block_size = config.block_size

    attn_mask = None  # the new tokens attend causally to each other and to everything cached

    def positions(self, T: int, device) -> torch.Tensor:
        """Positions of the next T tokens; an error past the context window."""
        if self.length + T > self.block_size:
            raise ValueError(f"sequence of {self.length + T} tokens is longer than block_size {self.block_size}")
        return torch.arange(self.length, self.length + T, dtype=torch.long, device=device)

    def advance(self, T: int) -> None:
        self.length += T

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this layer's new keys/values at the current position; return all cached ones."""
        end = self.length + k.size(2)
        self.buffers[layer, 0, :, :, self.length:end] = k
        self.buffers[layer, 1, :, :, self.length:end] = v
        return self.buffers[layer, 0, :, :, :end], self.buffers[layer, 1, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        if config.qk_norm:  # RMSNorm gains: one per head dimension for queries, then one for keys, shared by heads
            self.qk_gain = nn.Parameter(torch.ones(2 * (config.n_embd // config.n_head)))

    def forward(self, x, kv_cache=None, layer=0, rope=None):
        """rope: the (cos, sin) tables of these T positions, with rotary embeddings."""
        B, T, C = x.size()
        if self.qk_norm or rope is not None:
            q, k, v = self.modern_qkv(x, rope)
        else:
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        is_causal, attn_mask = True, None
        if kv_cache is not None:
            # the cache is filled from position 0 by one prefill, then one token at a time;
            # a single new token may attend to every cached one, so it needs no causal mask
            # (a cache of many rows at different lengths gives a mask of each row's own keys)
            assert T == 1 or kv_cache.length == 0, "prefill only into an empty cache"
            k, v = kv_cache.append(layer, k, v)
            attn_mask = kv_cache.attn_mask
            is_causal = T > 1 and attn_mask is None
        # flash attention where the backend has it
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def modern_qkv(self, x, rope):
        """q, k, v (B, n_head, T, head_dim) with QK-norm and/or rotary, both applied to q and k in one go."""
        B, T, C = x.size()
        head_dim = C // self.n_head
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, head_dim)
        qk, v = qkv[:, :, :2], qkv[:, :, 2]
        if self.qk_norm:
            qk = F.rms_norm(qk, (head_dim,), eps=1e-5) * self.qk_gain.view(2, 1, head_dim)
        if rope is not None:  # rotate before caching: a cached key keeps its position
            cos, sin = (t.unsqueeze(-2).unsqueeze(-2) for t in rope)  # (T, 1, 1, hd/2) or (B, T, 1, 1, hd/2)
            qk = apply_rotary(qk, cos, sin)
        q, k = qk.unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.act = make_activation(config.activation)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config, config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config, config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, kv_cache=None, layer=0, rope=None):
        x = x + self.attn(self.ln_1(x), kv_cache, layer, rope)  # pre-LayerNorm residual blocks
        return x + self.mlp(self.ln_2(x))


class GPT(LanguageModel):
    accepts_loss_only = True  # forward(..., loss_only=True): the chunked loss, no logits (the GPU path)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        # modules are built (and their random initial weights drawn) in GPT-2's order; options only add or drop some
        layers = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if not config.rotary:
            layers["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.transformer = nn.ModuleDict(dict(
            **layers,
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=make_norm(config, config.n_embd),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if not config.untied_head:
            self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.rotary = Rotary(config.n_embd // config.n_head, config.block_size) if config.rotary else None
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
            if config.zero_init and (name.endswith("c_proj.weight") or (name == "lm_head.weight" and config.untied_head)):
                torch.nn.init.zeros_(p)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None, kv_cache=None, loss_only=False):
        """logits (B, T, vocab) and the mean cross-entropy if `targets` is given (-1 = ignore).

        Without targets only the last position's logits are computed: that is all sampling needs.
        With loss_only, (None, loss) by chunked_loss.py, which never holds the whole batch's logits.
        """
        B, T = idx.size()
        if kv_cache is not None:
            pos = kv_cache.positions(T, idx.device)  # (T,), or (B, 1) when each row is at its own place
        elif T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        else:
            pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        if self.rotary is None:
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
            rope = None
        else:
            x = self.transformer.drop(self.transformer.wte(idx))
            rope = self.rotary(pos)  # the angles of these positions, applied to q and k in every layer
        for layer, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, layer, rope)
        x = self.transformer.ln_f(x)
        if kv_cache is not None:
            kv_cache.advance(T)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        if loss_only:
            return None, linear_cross_entropy(x.view(B * T, -1), self.lm_head.weight, targets.reshape(-1))
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def new_kv_cache(self, batch_size: int) -> KVCache:
        p = self.lm_head.weight
        return KVCache(self.config, batch_size, p.device, p.dtype)

    def new_row_cache(self, max_rows: int) -> RowKVCache:
        """A cache of max_rows independent sequences, for a server that batches many requests."""
        p = self.lm_head.weight
        return RowKVCache(self.config, max_rows, p.device, p.dtype)

    def generate(self, idx, max_new_tokens: int, **sampling):
        """idx (B, T) extended by max_new_tokens tokens; see generation.generate_tokens for the options."""
        return generate(self, idx, max_new_tokens, **sampling)
