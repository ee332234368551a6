"""Model FLOPs utilisation: the share of the device's peak that a run's model arithmetic uses.

FLOPs per token (training: forward and backward) follow nanochat's count:

    6 * N_matmul + 12 * n_layer * n_embd * T

N_matmul is every Linear weight (the language-model head too, tied or not); embeddings, norms and
biases are left out. The second term is attention's two T x T matmuls. GPT-2 124M at T = 1024 with
its vocabulary padded to 50304: 6 * 123,568,128 + 113,246,208 = 854.65M FLOPs per token.

MFU = tokens per second per device x FLOPs per token / the device's dense bf16 peak. The peaks are
the makers' dense (not sparse) bf16 figures; a device not in the table has no MFU (None), and a CPU
has none. Knows torch models and device names, nothing of training.
"""
import torch

# dense bf16 tensor-core peaks, FLOP/s; the first name fragment found in the device's name wins
PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),   # SXM and NVL; nanochat and llm.c use 989
    ("H200", 989e12),
    ("H800", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),   # nanoGPT's figure
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)


def matmul_params(model) -> int:
    """Weights of every Linear layer (a tied head counted as the matmul it is)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def flops_per_token(model, block_size: int) -> int:
    """Training FLOPs per token (forward + backward) of a torch model at context length block_size."""
    flops = 6 * matmul_params(model)
    config = getattr(model, "config", None)
    if getattr(config, "kind", None) == "transformer":
        flops += 12 * config.n_layer * config.n_embd * block_size
    return flops


def peak_flops(device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None where unknown (CPUs, unlisted GPUs)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return peak_of_name(torch.cuda.get_device_name(device))


def peak_of_name(name: str) -> float | None:
    for fragment, peak in PEAK_BF16:
        if fragment in name:
            return peak
    return None


class Utilisation:
    """MFU of a run: tokens per second across `devices` devices -> a fraction of their peak (None if unknown)."""

    def __init__(self, model, block_size: int, device, devices: int = 1, peak: float | None = None):
        self.flops_per_token = flops_per_token(model, block_size)
        self.peak = peak if peak is not None else peak_flops(device)
        self.devices = devices

    def mfu(self, tokens_per_s: float) -> float | None:
        if not self.peak:
            return None
        return tokens_per_s * self.flops_per_token / (self.peak * self.devices)
