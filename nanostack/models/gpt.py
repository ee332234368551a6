"""GPT: a decoder-only transformer in one file (GPT-2's architecture, sized by GPTConfig).

Token + position embeddings, pre-LayerNorm blocks of causal self-attention and a GELU MLP,
a final LayerNorm and a language-model head that shares its weights with the token embedding.
Parameter names match nanoGPT's (and so GPT-2's checkpoints, transposed where GPT-2 uses Conv1D).
"""
import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from nanostack.models.base import LanguageModel
from nanostack.models.chunked_loss import linear_cross_entropy
from nanostack.models.config import ModelConfig
from nanostack.models.generation import generate
from nanostack.models.kv_rows import RowKVCache


GPTConfig = ModelConfig  # the GPT reads vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias


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

    def forward(self, x, kv_cache=None, layer=0):
        B, T, C = x.size()
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


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # exact (erf) GELU: 3-4x faster than the tanh approximation on CPUs; GPT-2's checkpoints need tanh
        self.gelu = nn.GELU(approximate="tanh" if config.activation == "gelu_tanh" else "none")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, kv_cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), kv_cache, layer)  # pre-LayerNorm residual blocks
        return x + self.mlp(self.ln_2(x))


class GPT(LanguageModel):
    accepts_loss_only = True  # forward(..., loss_only=True): the chunked loss, no logits (the GPU path)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

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
            pos = kv_cache.positions(T, idx.device)  # (T,), or (B, T) when each row is at its own place
        elif T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        else:
            pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for layer, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, layer)
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
