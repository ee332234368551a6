"""Every model kind by name, and `build(config)`: the model that config.kind names, on torch."""
from nanostack.errors import UserError
from nanostack.models.bigram import Bigram, BigramCounts
from nanostack.models.config import KINDS, ModelConfig
from nanostack.models.gpt import GPT
from nanostack.models.mlp import MLP
from nanostack.models.rnn import RNN
from nanostack.models.wavenet import WaveNet

MODELS = {"transformer": GPT, "bigram": Bigram, "bigram_counts": BigramCounts, "mlp": MLP,
          "rnn": RNN, "gru": RNN, "lstm": RNN, "wavenet": WaveNet}
assert tuple(MODELS) == KINDS


def build(config: ModelConfig):
    if config.kind not in MODELS:
        raise UserError(f"unknown model {config.kind!r}", f"use one of: {', '.join(KINDS)}")
    return MODELS[config.kind](config)
