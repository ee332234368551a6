"""ModelConfig: the shape of any model of models/, and which one it is (kind); which kinds the numpy
engine (nanostack.grad) also runs."""
from dataclasses import dataclass

KINDS = ("transformer", "bigram", "bigram_counts", "mlp", "rnn", "gru", "lstm", "wavenet")
ACTIVATIONS = ("gelu", "gelu_tanh")  # the transformer MLP's: exact erf GELU, GPT-2's tanh GELU (gelu_new)


@dataclass
class ModelConfig:
    vocab_size: int
    block_size: int = 64      # context length: the longest sequence a model reads
    kind: str = "transformer"
    n_layer: int = 4          # transformer blocks (wavenet: ignored; its depth follows block_size)
    n_head: int = 4
    n_embd: int = 128         # token embedding width
    n_embd2: int = 64         # hidden width of mlp, rnn/gru/lstm and wavenet
    dropout: float = 0.0
    bias: bool = True
    batchnorm: bool = False   # mlp and wavenet: BatchNorm after the hidden layer(s)
    context: int = 0          # mlp and wavenet: how many tokens back they read (0: block_size)
    activation: str = "gelu"  # the MLP's nonlinearity, one of ACTIVATIONS

    @property
    def context_width(self) -> int:
        return self.context or self.block_size

    def problem(self):
        """What makes this shape impossible (a message), or None: a hand-edited config is checked here."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_embd2"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                return f"{name} must be a positive whole number, not {value!r}"
        if self.kind not in KINDS:
            return f"unknown model kind {self.kind!r}"
        if self.kind == "transformer" and self.n_embd % self.n_head:
            return f"n_embd ({self.n_embd}) is not divisible by n_head ({self.n_head})"
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            return f"dropout must be in [0, 1), not {self.dropout!r}"
        if self.activation not in ACTIVATIONS:
            return f"unknown activation {self.activation!r}"
        if not isinstance(self.context, int) or self.context < 0:
            return f"context must be a whole number >= 0, not {self.context!r}"
        return None


NUMPY_KINDS = ("transformer", "mlp")  # the models written twice: on torch, and on nanostack.grad (numpy)


def numpy_support_problem(kind: str, batchnorm: bool = False):
    """Why the numpy engine cannot run this model (a message), or None when it can."""
    if kind not in NUMPY_KINDS or batchnorm:
        return (f"the numpy backend trains the transformer and the mlp (no batchnorm), not "
                f"{kind}{' with batchnorm' if batchnorm else ''}")
    return None
