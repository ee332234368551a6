"""Models, one interface: model(idx, targets=None) -> (logits, loss), model.config (a ModelConfig),
model.num_params(); generation.generate / generate_tokens sample from any of them, and engines.py
builds any of them on torch or on numpy (nanostack.grad).

transformer is the GPT (gpt.py); the makemore family predicts one character at a time from
shorter contexts: bigram.py (a counted table, and a learned one), mlp.py (Bengio et al. 2003),
rnn.py (RNN, GRU and LSTM cells written out) and wavenet.py (a hierarchical MLP). gpt_numpy.py and
mlp_numpy.py are the same models on nanostack.grad.

Names are imported when first used, so `from nanostack.models import ModelConfig` (or importing the
numpy twins) does not load torch.
"""
from importlib import import_module

_WHERE = {"Bigram": "bigram", "BigramCounts": "bigram", "KINDS": "config", "ModelConfig": "config",
          "generate": "generation", "generate_tokens": "generation", "sample_next_token": "generation",
          "GPT": "gpt", "GPTConfig": "gpt", "KVCache": "gpt", "RowKVCache": "kv_rows", "MLP": "mlp", "RNN": "rnn", "WaveNet": "wavenet",
          "MODELS": "registry", "build": "registry"}


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'nanostack.models' has no attribute {name!r}")
    return getattr(import_module(f"nanostack.models.{_WHERE[name]}"), name)


__all__ = sorted(_WHERE)
