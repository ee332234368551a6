"""Layers on Tensor, with torch's names: a Module's parameters are found by walking its attributes
(sub-modules, and lists and dicts of them), so `state_dict()` keys read like torch's
("transformer.h.0.attn.c_attn.weight") and weights move between the two as plain arrays.
"""
import math

import numpy as np

from nanostack.grad import functional as F
from nanostack.grad.tensor import Tensor

# initial weights come from this generator; seed it (manual_seed) for a repeatable init
init_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed initialisation here and dropout in functional."""
    global init_generator
    init_generator = np.random.default_rng(seed)
    F.manual_seed(seed + 1)


def parameter(array, dtype=np.float32) -> Tensor:
    return Tensor(np.asarray(array, dtype=dtype), requires_grad=True)


class Module:
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def named_children(self):
        """(name, module) for every sub-module held directly, or in a list or dict (nested)."""
        for name, value in vars(self).items():
            yield from _modules_in(name, value)

    def named_parameters(self, prefix="", keep_duplicates=False, _seen=None):
        """(name, tensor) for every parameter; a shared (tied) tensor appears once, under its first name,
        unless keep_duplicates."""
        seen = set() if _seen is None else _seen
        for name, value in vars(self).items():
            if isinstance(value, Tensor) and value.requires_grad and (keep_duplicates or id(value) not in seen):
                seen.add(id(value))
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(f"{prefix}{name}.", keep_duplicates, seen)

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self) -> dict:
        """Every parameter's array by name, tied ones under each of their names (as torch)."""
        return {name: p.data for name, p in self.named_parameters(keep_duplicates=True)}

    def load_state_dict(self, arrays: dict) -> None:
        """Copy arrays into the parameters, cast to their dtype. A tied parameter needs only one of its
        names; unknown names, missing weights and wrong shapes raise KeyError or ValueError."""
        params = dict(self.named_parameters(keep_duplicates=True))
        unknown = sorted(set(arrays) - set(params))
        if unknown:
            raise KeyError(f"unexpected weights {unknown[:3]}")
        loaded = set()
        for name, array in arrays.items():
            p = params[name]
            if tuple(array.shape) != p.shape:
                raise ValueError(f"{name} has shape {tuple(array.shape)}, the model expects {p.shape}")
            p.data = np.array(array, dtype=p.dtype)
            loaded.add(id(p))
        missing = [name for name, p in params.items() if id(p) not in loaded]
        if missing:
            raise KeyError(f"missing weights {missing[:3]}")


def _modules_in(name, value):
    if isinstance(value, Module):
        yield name, value
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _modules_in(f"{name}.{i}", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _modules_in(f"{name}.{key}", item)


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        bound = 1 / math.sqrt(in_features)  # torch's default init
        self.weight = parameter(init_generator.uniform(-bound, bound, (out_features, in_features)), dtype)
        self.bias = parameter(init_generator.uniform(-bound, bound, out_features), dtype) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim, dtype=np.float32):
        self.weight = parameter(init_generator.standard_normal((num_embeddings, embedding_dim)), dtype)

    def forward(self, idx):
        return self.weight[idx]


class LayerNorm(Module):
    def __init__(self, dim, bias=True, eps=1e-5, dtype=np.float32):
        self.weight = parameter(np.ones(dim), dtype)
        self.bias = parameter(np.zeros(dim), dtype) if bias else None
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    def __init__(self, p=0.5):
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)
