"""Models, one interface: model(idx, targets=None) -> (logits, loss); generation.generate(model, ...).

transformer is the GPT (gpt.py); the makemore family predicts one character at a time from
shorter contexts: bigram.py (a counted table, and a learned one), mlp.py (Bengio et al. 2003),
rnn.py (RNN, GRU and LSTM cells written out) and wavenet.py (a hierarchical MLP).
"""
from nanostack.errors import UserError
from nanostack.models.bigram import Bigram, BigramCounts
from nanostack.models.config import KINDS, ModelConfig
from nanostack.models.generation import generate, sample_next_token
from nanostack.models.gpt import GPT, GPTConfig, KVCache
from nanostack.models.mlp import MLP
from nanostack.models.rnn import RNN
from nanostack.models.wavenet import WaveNet

MODELS = {"transformer": GPT, "bigram": Bigram, "bigram_counts": BigramCounts, "mlp": MLP,
          "rnn": RNN, "gru": RNN, "lstm": RNN, "wavenet": WaveNet}


def build(config: ModelConfig):
    if config.kind not in MODELS:
        raise UserError(f"unknown model {config.kind!r}", f"use one of: {', '.join(KINDS)}")
    return MODELS[config.kind](config)


__all__ = ["GPT", "GPTConfig", "KINDS", "KVCache", "MLP", "MODELS", "ModelConfig", "RNN", "Bigram", "BigramCounts",
           "WaveNet", "build", "generate", "sample_next_token"]
