"""GPT-2's checkpoint layout against nanostack's GPT: the same tensor names (nanoGPT chose them so),
but GPT-2 stores its four projection matrices as Conv1D weights, (in, out), where a Linear holds
(out, in). Knows tensors and names only."""
import torch

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
HEAD = "lm_head.weight"  # tied to transformer.wte.weight in GPT-2: stored once, as wte


def is_conv1d(name: str) -> bool:
    return name.endswith(CONV1D)


def gpt2_to_nanostack(tensors: dict) -> dict:
    """GPT-2 tensors (with or without the `transformer.` prefix) as nanostack GPT weights."""
    out = {}
    for name, tensor in tensors.items():
        if name != HEAD and not name.startswith("transformer."):
            name = "transformer." + name
        out[name] = tensor.t().contiguous() if is_conv1d(name) else tensor
    return out


def nanostack_to_gpt2(tensors: dict) -> dict:
    """nanostack GPT weights as GPT-2's tensors (the tied head stored once, as wte)."""
    out = {}
    for name, tensor in tensors.items():
        if name == HEAD:
            continue
        out[name] = tensor.t().contiguous() if is_conv1d(name) else tensor.contiguous()
    return out


def with_bias_zeros(tensors: dict, n_layer: int, n_embd: int, dtype) -> dict:
    """A bias-free model's tensors with the zero biases GPT-2's layers always have."""
    zeros = {"ln_1.bias": n_embd, "ln_2.bias": n_embd, "attn.c_attn.bias": 3 * n_embd,
             "attn.c_proj.bias": n_embd, "mlp.c_fc.bias": 4 * n_embd, "mlp.c_proj.bias": n_embd}
    out = dict(tensors)
    for i in range(n_layer):
        for suffix, size in zeros.items():
            out.setdefault(f"transformer.h.{i}.{suffix}", torch.zeros(size, dtype=dtype))
    out.setdefault("transformer.ln_f.bias", torch.zeros(n_embd, dtype=dtype))
    return out
