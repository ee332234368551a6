"""ModelConfig: the shape of any model of models/, and which one it is (kind); which kinds the numpy
engine (nanostack.grad) also runs."""
from dataclasses import dataclass

KINDS = ("transformer", "bigram", "bigram_counts", "mlp", "rnn", "gru", "lstm", "wavenet")


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

    @property
    def context_width(self) -> int:
        return self.context or self.block_size


NUMPY_KINDS = ("transformer", "mlp")  # the models written twice: on torch, and on nanostack.grad (numpy)


def numpy_support_problem(kind: str, batchnorm: bool = False):
    """Why the numpy engine cannot run this model (a message), or None when it can."""
    if kind not in NUMPY_KINDS or batchnorm:
        return (f"the numpy backend trains the transformer and the mlp (no batchnorm), not "
                f"{kind}{' with batchnorm' if batchnorm else ''}")
    return None
