"""Sampling a small GPT-2-style model in plain numpy, with a KV cache and no torch at all.

Why: importing torch takes longer (~0.9 s) than sampling 2000 tokens from cpu_small, and a decoding
step of a model this small is a few dozen tiny ops, where torch's per-op cost dominates. So
`nanostack sample` decodes such models here (sample.py decides when).

What it promises: the same tokens as generation.generate_tokens on the CPU for the same seed. It
slides the context window the same way, makes the same inverse-CDF draw (sample_next_token's, step
for step), and draws from the same random stream: a CPU torch.Generator is MT19937 seeded by
init_genrand, and Python's `random` runs MT19937 from any state it is given (TorchCPURandom). The logits agree with
torch's to float32 rounding, so a token could differ only where a draw lands within ~1e-7 of the
boundary between two tokens (tests/test_numpy_decode.py checks long runs token for token).

What it does not know: training, gradients, the modern options (rotary, RMSNorm, QK-norm, ReLU²,
an untied head), other model kinds, batches of several sequences. Those sample with torch.
"""
import math
import random

import numpy as np

from nanostack.grad.functional import erf
from nanostack.models.config import GPT2_ACTIVATIONS, SMALL_MODEL, ModelConfig


class TorchCPURandom:
    """The float32 stream of torch.rand(1, generator=torch.Generator().manual_seed(seed)), without torch:
    both generators are MT19937 seeded by init_genrand, and torch keeps 24 bits of each 32-bit draw."""

    def __init__(self, seed: int):
        state = [seed & 0xFFFFFFFF]
        for i in range(1, 624):
            state.append((1812433253 * (state[-1] ^ (state[-1] >> 30)) + i) & 0xFFFFFFFF)
        self._mt = random.Random()
        self._mt.setstate((3, (*state, 624), None))  # 624: the next draw twists the whole state first

    def rand(self) -> np.float32:
        return np.float32((self._mt.getrandbits(32) & 0xFFFFFF) / (1 << 24))


def sample_next(logits: np.ndarray, temperature=1.0, top_k=None, top_p=None, rng=None) -> int:
    """One token id from one row of logits (vocab,): generation.sample_next_token, op for op."""
    if temperature == 0:
        return int(np.argmax(logits))
    logits = logits.astype(np.float32) / np.float32(temperature)
    vocab = logits.shape[-1]
    if top_k is not None and top_k < vocab:
        kth = np.partition(logits, vocab - top_k)[vocab - top_k]
        logits = np.where(logits < kth, np.float32(-np.inf), logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        sorted_probs = probs[order]
        mass_before = cumsum(sorted_probs) - sorted_probs
        probs = np.zeros_like(probs)
        probs[order] = np.where(mass_before >= top_p, np.float32(0), sorted_probs)
    cdf = cumsum(probs)
    u = rng.rand() * cdf[-1]
    return min(int(np.searchsorted(cdf, u, side="right")), vocab - 1)


def cumsum(x: np.ndarray) -> np.ndarray:
    """torch's CPU cumsum of float32: summed in float64, each prefix rounded to float32."""
    return np.cumsum(x, dtype=np.float64).astype(np.float32)


def decoder_problem(config: ModelConfig):
    """Why this decoder cannot sample a model of this config (a message), or None if it can."""
    if config.kind != "transformer":
        return f"it decodes transformers, not {config.kind}"
    options = [name for name in config.modern_options() if name != "zero_init"]  # zero_init: only the start
    if options:
        return f"it has none of the modern options ({', '.join(options)})"
    params = config.n_layer * 12 * config.n_embd ** 2 + (config.vocab_size + config.block_size) * config.n_embd
    if params >= SMALL_MODEL:
        return f"the model has ~{params / 1e6:.0f}M parameters: torch decodes models that large faster"
    return None


def weight_shapes(config: ModelConfig) -> dict:
    """{name: shape} of a GPT-2-style checkpoint of this config, as gpt.py's state dict names them
    (the tied embedding stored once, as lm_head.weight)."""
    C, layers = config.n_embd, [f"transformer.h.{i}." for i in range(config.n_layer)]
    shapes = {"lm_head.weight": (config.vocab_size, C), "transformer.wpe.weight": (config.block_size, C)}
    for norm in [h + ln for h in layers for ln in ("ln_1", "ln_2")] + ["transformer.ln_f"]:
        shapes[norm + ".weight"] = shapes[norm + ".bias"] = (C,)
    linears = {"attn.c_attn": (3 * C, C), "attn.c_proj": (C, C), "mlp.c_fc": (4 * C, C), "mlp.c_proj": (C, 4 * C)}
    for h in layers:
        for part, (n_out, n_in) in linears.items():
            shapes[h + part + ".weight"], shapes[h + part + ".bias"] = (n_out, n_in), (n_out,)
    return {name: shape for name, shape in shapes.items() if config.bias or not name.endswith(".bias")}


def read_decoder(config: ModelConfig, path):
    """A NumpyDecoder of the safetensors file at `path`, or None if the file cannot be read as this
    config's float weights (the torch loader then names the problem)."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    try:
        weights = load_file(str(path))
    except Exception:  # noqa: BLE001 - missing, damaged, or a dtype numpy lacks (bfloat16): torch reports it
        return None
    weights.pop("transformer.wte.weight", None)  # a copy of the tied lm_head.weight, when a file has both
    shapes = weight_shapes(config)
    if {name: w.shape for name, w in weights.items()} != shapes or \
            any(w.dtype.kind != "f" for w in weights.values()):
        return None
    return NumpyDecoder(config, weights)


class NumpyDecoder:
    """One sequence's decoding state over a GPT's weights: feed tokens, get the next token's logits."""

    def __init__(self, config: ModelConfig, weights: dict):
        problem = decoder_problem(config)
        if problem:
            raise ValueError(f"the numpy decoder cannot sample this model: {problem}")
        self.config = config
        f32 = {name: np.ascontiguousarray(w, dtype=np.float32) for name, w in weights.items()}
        self.wte = f32["lm_head.weight"]  # tied to the token embedding
        self.wpe = f32["transformer.wpe.weight"]
        self.ln_f = norm_weights(f32, "transformer.ln_f")
        self.layers = []
        for i in range(config.n_layer):
            p = f"transformer.h.{i}."
            self.layers.append(dict(
                ln_1=norm_weights(f32, p + "ln_1"), ln_2=norm_weights(f32, p + "ln_2"),
                attn=linear_weights(f32, p + "attn.c_attn"), attn_proj=linear_weights(f32, p + "attn.c_proj"),
                fc=linear_weights(f32, p + "mlp.c_fc"), fc_proj=linear_weights(f32, p + "mlp.c_proj")))
        self.gelu = gelu_tanh if config.activation == "gelu_tanh" else gelu
        head_dim = config.n_embd // config.n_head
        self.cache = np.zeros((config.n_layer, 2, config.n_head, config.block_size, head_dim), dtype=np.float32)
        self.length = 0  # tokens cached so far; also the position of the next token
        self.scale = np.float32(1 / math.sqrt(head_dim))
        assert config.activation in GPT2_ACTIVATIONS

    def reset(self) -> None:
        self.length = 0

    def forward(self, ids) -> np.ndarray:
        """Logits (vocab,) of the token after `ids`, which continue the cached tokens."""
        T, L = len(ids), self.length
        if L + T > self.config.block_size:
            raise ValueError(f"sequence of {L + T} tokens is longer than block_size {self.config.block_size}")
        nh, C = self.config.n_head, self.config.n_embd
        x = self.wte[ids] + self.wpe[L:L + T]  # (T, C)
        # the new tokens attend causally to each other and to everything cached
        future = np.triu(np.ones((T, L + T), dtype=bool), k=L + 1) if T > 1 else None
        for cache, w in zip(self.cache, self.layers):
            qkv = linear(layer_norm(x, *w["ln_1"]), *w["attn"]).reshape(T, 3, nh, C // nh)
            q, k, v = qkv.transpose(1, 2, 0, 3)  # each (nh, T, hs)
            cache[0, :, L:L + T], cache[1, :, L:L + T] = k, v
            att = (q @ cache[0, :, :L + T].transpose(0, 2, 1)) * self.scale  # (nh, T, L + T)
            if future is not None:
                att[:, future] = -np.inf
            att = np.exp(att - att.max(axis=-1, keepdims=True))
            att /= att.sum(axis=-1, keepdims=True)
            y = (att @ cache[1, :, :L + T]).transpose(1, 0, 2).reshape(T, C)  # (nh, T, hs) -> (T, C)
            x = x + linear(y, *w["attn_proj"])
            x = x + linear(self.gelu(linear(layer_norm(x, *w["ln_2"]), *w["fc"])), *w["fc_proj"])
        self.length = L + T
        return layer_norm(x[-1], *self.ln_f) @ self.wte.T

    def generate_tokens(self, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, rng=None):
        """Yield max_new_tokens token ids continuing `ids`, as generation.generate_tokens does for one row:
        when the window is full it restarts from the last 3/4 of a block (one prefill)."""
        block = self.config.block_size
        keep = max(1, block - block // 4)
        seq = list(ids)
        start = max(0, len(seq) - block)
        self.reset()
        for _ in range(max_new_tokens):
            if len(seq) - start > block:
                start = len(seq) - keep
                self.reset()
            logits = self.forward(seq[start:] if self.length == 0 else seq[-1:])
            token = sample_next(logits, temperature, top_k, top_p, rng)
            seq.append(token)
            yield token


def norm_weights(weights: dict, name: str):
    return weights[name + ".weight"], weights.get(name + ".bias")


def linear_weights(weights: dict, name: str):
    return np.ascontiguousarray(weights[name + ".weight"].T), weights.get(name + ".bias")  # (in, out)


def layer_norm(x, weight, bias, eps=1e-5):
    per_item = np.float32(1 / x.shape[-1])  # sum * 1/n: ndarray.mean costs ~5 µs of Python per call
    centred = x - x.sum(axis=-1, keepdims=True) * per_item
    y = centred / np.sqrt((centred * centred).sum(axis=-1, keepdims=True) * per_item + np.float32(eps)) * weight
    return y if bias is None else y + bias


def linear(x, weight_t, bias):
    y = x @ weight_t
    return y if bias is None else y + bias


def gelu(x):
    return x * (np.float32(0.5) * (1 + erf(x * np.float32(1 / math.sqrt(2)))))


def gelu_tanh(x):
    return np.float32(0.5) * x * (1 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x ** 3)))
