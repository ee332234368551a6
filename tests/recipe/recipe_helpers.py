"""Tiny models with exactly one bug each, and the contexts the doctor checks them in (spec §4).

Two families, as in the spec: a 2-layer char GPT (nanostack's own, AdamW) on a stream of text, and a
3-layer tanh MLP (makemore part 3's, SGD) on names, one example per line. Each bug is one change to
the healthy model, its optimizer or its loader.
"""
import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from nanostack.data import open_dataset
from nanostack.data.dataset import Dataset
from nanostack.models import ModelConfig
from nanostack.models.engines import build_model
from nanostack.models.gpt import CausalSelfAttention
from nanostack.models.mlp import contexts
from nanostack.recipe import DoctorContext
from nanostack.train.optimizer import make_optimizer

GPT_SHAPE = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}
GPT_TRAIN = {"learning_rate": 1e-3, "batch_size": 8, "seed": 1337}
MLP_TRAIN = {"learning_rate": 0.1, "batch_size": 16, "seed": 42}


# ---- the GPT family ------------------------------------------------------------------------------------------
class NonCausalAttention(CausalSelfAttention):
    """The bug: attention without the causal mask (every position sees the future)."""

    def forward(self, x, kv_cache=None, layer=0, rope=None):  # the tiny GPT has no rotary: rope stays None
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class UnseededDropout(nn.Dropout):
    """The bug: dropout drawing from a generator seeded from the operating system's entropy."""

    def __init__(self, p):
        super().__init__(p)
        self.generator = torch.Generator()
        self.generator.seed()

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep / (1 - self.p)


def gpt_factory(vocab_size: int, bug: str = ""):
    config = ModelConfig(vocab_size=vocab_size, kind="transformer", dropout=0.1 if bug == "dropout" else 0.0,
                         **GPT_SHAPE)

    def new_model(seed):
        model = build_model("torch", config, seed)
        if bug == "noncausal":
            for block in model.transformer.h:
                block.attn.__class__ = NonCausalAttention
        elif bug == "x10":
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() == 2:
                        p.mul_(10)
        elif bug == "dropout":
            for block in model.transformer.h:
                block.mlp.dropout = UnseededDropout(0.1)
        elif bug == "dead-relu":  # a ReLU after a Linear whose bias is -10: every unit of that layer is dead
            mlp = model.transformer.h[0].mlp
            mlp.act = nn.ReLU()
            with torch.no_grad():
                mlp.c_fc.bias.fill_(-10.0)
        return model

    return new_model


def adamw(model, lr, weight_decay):
    return make_optimizer(model, lr, weight_decay, (0.9, 0.99), "cpu")


def frozen_adamw(model, lr, weight_decay):
    """The bug: every layer but the token table (the embedding, tied to the output layer) is frozen before the
    optimizer is made (a fine-tuning setup left on): the blocks never move."""
    for name, p in model.named_parameters():
        p.requires_grad_(name == "transformer.wte.weight")
    return make_optimizer(model, lr, weight_decay, (0.9, 0.99), "cpu")


class ShuffledTargets(Dataset):
    """The bug: a loader that shuffles y across the rows of each batch (x and y no longer belong together)."""

    def __init__(self, inner):
        self.inner = inner
        self.kind, self.heldout, self.tokenizer, self.data_hash = inner.kind, inner.heldout, inner.tokenizer, "x"

    def batch(self, split, batch_size, block_size, generator, device="cpu"):
        x, y = self.inner.batch(split, batch_size, block_size, generator, device)
        return x, y[torch.randperm(len(y), generator=generator)]

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def block_size(self, requested=None, log=print):
        return self.inner.block_size(requested, log)

    def examples(self, split, block_size):
        return self.inner.examples(split, block_size)

    def batches(self, split, block_size, batch_size=64):
        return self.inner.batches(split, block_size, batch_size)


def gpt_context(text_path, bug: str = "", lr=None) -> DoctorContext:
    data = open_dataset(str(text_path), "char", "stream", 1337, log=lambda *a: None)
    block = data.block_size(GPT_SHAPE["block_size"])
    if bug == "shuffled":
        data = ShuffledTargets(data)
    optimizer = frozen_adamw if bug == "frozen" else adamw
    return DoctorContext(data, gpt_factory(data.tokenizer.vocab_size, bug), optimizer, block_size=block,
                         **{**GPT_TRAIN, "learning_rate": lr or GPT_TRAIN["learning_rate"]})


# ---- the MLP family ------------------------------------------------------------------------------------------
class TanhMLP(nn.Module):
    """makemore part 3's MLP: embed the last `context` characters, `layers` Linear + tanh layers, an output
    layer; Kaiming init with `gain`, the output layer scaled by `out_scale`."""

    def __init__(self, vocab_size, context=3, n_embd=10, hidden=64, layers=5, gain=5 / 3, out_scale=0.1):
        super().__init__()
        self.vocab_size, self.context = vocab_size, context
        self.wte = nn.Embedding(vocab_size + 1, n_embd)  # + a blank before the start
        sizes = [context * n_embd] + [hidden] * layers
        self.linears = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(layers))
        self.acts = nn.ModuleList(nn.Tanh() for _ in range(layers))
        self.lm_head = nn.Linear(hidden, vocab_size)
        with torch.no_grad():
            for linear in self.linears:
                linear.weight.normal_(0, gain / math.sqrt(linear.in_features))
                linear.bias.zero_()
            self.lm_head.weight.normal_(0, out_scale / math.sqrt(hidden))
            self.lm_head.bias.zero_()

    def forward(self, idx, targets=None):
        B, T = idx.shape
        h = self.wte(contexts(idx, self.context, self.vocab_size)).reshape(B, T, -1)
        for linear, act in zip(self.linears, self.acts):
            h = act(linear(h))
        logits = self.lm_head(h)
        loss = None if targets is None else F.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                             targets.reshape(-1), ignore_index=-1)
        return logits, loss


def mlp_factory(vocab_size: int, bug: str = ""):
    def new_model(seed):
        kwargs = {"gain": 1.0} if bug == "gain1" else {"out_scale": 1.0} if bug == "unscaled" else {}
        model = TanhMLP(vocab_size, **kwargs)
        if bug == "x10":
            with torch.no_grad():
                for linear in model.linears:
                    linear.weight.mul_(10)
        return model

    return new_model


def sgd(model, lr, weight_decay):
    return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)


def mlp_context(names_path, bug: str = "") -> DoctorContext:
    data = open_dataset(str(names_path), "char", "lines", MLP_TRAIN["seed"], log=lambda *a: None)
    block = data.block_size(None, log=lambda *a: None)
    lr = MLP_TRAIN["learning_rate"] * (10 if bug == "lr10" else 1)
    return DoctorContext(data, mlp_factory(data.tokenizer.vocab_size, bug), sgd, block_size=block,
                         **{**MLP_TRAIN, "learning_rate": lr})
