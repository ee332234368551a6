"""ModelConfig: the shape of any model of models/, and which one it is (kind); which kinds the numpy
engine (nanostack.grad) also runs.

The transformer also reads the modern options (all off by default, which is GPT-2's architecture);
`modern_options` names the ones a config turns on, for what cannot hold them (the numpy twin,
export formats).
"""
from dataclasses import dataclass

KINDS = ("transformer", "bigram", "bigram_counts", "mlp", "rnn", "gru", "lstm", "wavenet")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu2")  # exact erf GELU, GPT-2's tanh GELU (gelu_new), ReLU squared
GPT2_ACTIVATIONS = ("gelu", "gelu_tanh")  # the two GELUs are GPT-2's architecture, not a modern option
# Below this many parameters a decoding step is dozens of tiny ops: waking a second thread for each
# costs more than it saves (one thread samples cpu_small ~20% faster on 2 cores), and sample.py
# decodes GPT-2-style models in plain numpy (numpy_decode.py), which starts without torch.
SMALL_MODEL = 5_000_000
# the transformer's options beyond GPT-2, each with the value that turns it off
MODERN_DEFAULTS = {"rotary": False, "rmsnorm": False, "qk_norm": False, "activation": "gelu", "untied_head": False,
                   "zero_init": False}


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
    # transformer, modern options
    rotary: bool = False      # rotary position embeddings on queries and keys instead of a learned wpe
    rmsnorm: bool = False     # RMSNorm (a gain, no mean, no bias) instead of LayerNorm
    qk_norm: bool = False     # RMSNorm on each head's queries and keys before attention
    activation: str = "gelu"  # the MLP's nonlinearity, one of ACTIVATIONS
    untied_head: bool = False  # a language-model head of its own instead of the token embedding
    zero_init: bool = False   # output projections (attention, MLP, an untied head) start at zero

    @property
    def context_width(self) -> int:
        return self.context or self.block_size

    def modern_options(self) -> list:
        """The names of the modern options this config turns on."""
        return [name for name, off in MODERN_DEFAULTS.items() if getattr(self, name) != off
                and not (name == "activation" and self.activation in GPT2_ACTIVATIONS)]

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
        if not isinstance(self.context, int) or self.context < 0:
            return f"context must be a whole number >= 0, not {self.context!r}"
        if self.activation not in ACTIVATIONS:
            return f"unknown activation {self.activation!r}"
        if self.rotary and (self.n_embd // self.n_head) % 2:
            return f"rotary embeddings need an even head size, not {self.n_embd // self.n_head}"
        return None


NUMPY_KINDS = ("transformer", "mlp")  # the models written twice: on torch, and on nanostack.grad (numpy)


def numpy_support_problem(kind: str, batchnorm: bool = False, modern=()):
    """Why the numpy engine cannot run this model (a message), or None when it can. `modern`: the
    modern options (or Muon, weight averaging...) asked for; the numpy twin is GPT-2 with AdamW only."""
    if kind not in NUMPY_KINDS or batchnorm:
        return (f"the numpy backend trains the transformer and the mlp (no batchnorm), not "
                f"{kind}{' with batchnorm' if batchnorm else ''}")
    if modern:
        return f"the numpy backend trains GPT-2's architecture with AdamW; it has no {', '.join(modern)}"
    return None
