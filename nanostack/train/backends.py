"""Engine: what the training loop must not know about the engine and device it runs on.

The loop sees `model(x, y) -> (logits, loss)`, `loss.backward()`, `loss.item()` and an optimizer
with `param_groups`, `step()` and `zero_grad()`, on torch or on nanostack.grad's numpy Tensor.
What differs is here: the device and its autocast, torch.compile, building the optimizer,
gradient clipping, the no-grad context for evaluation, the random streams dropout draws from, and
how optimizer state becomes plain tensors for a checkpoint.
"""
import base64
from contextlib import nullcontext

import numpy as np
import torch

from nanostack.cpu import keep_freed_memory
from nanostack.grad import functional as grad_functional
from nanostack.grad import no_grad as grad_no_grad
from nanostack.grad import optim as grad_optim
from nanostack.models.engines import build_model, is_numpy, resolve_device
from nanostack.train.optimizer import make_optimizer


class Engine:
    def __init__(self, backend: str, device: str = "auto", dtype: str = "auto", compile: bool = False):
        self.backend = backend
        self.numpy = backend == "numpy"
        self.device = "cpu" if self.numpy else resolve_device(device)
        self.device_type = self.device.split(":")[0]
        self.compile = compile
        self.autocast = autocast_for(self.device, dtype)
        if self.device_type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if self.device_type == "cpu":
            keep_freed_memory()

    def build_model(self, model_config, seed: int):
        return build_model(self.backend, model_config, seed, self.device)

    def for_training(self, model):
        """The callable the loop trains through: the model, or its torch.compile'd twin."""
        return torch.compile(model) if self.compile else model

    def optimizer(self, model, learning_rate, weight_decay, betas, kind="adamw", muon_lr=0.02, muon_momentum=0.95):
        return make_optimizer(model, learning_rate, weight_decay, betas, self.device_type, numpy=self.numpy, kind=kind,
                              muon_lr=muon_lr, muon_momentum=muon_momentum)

    def clip_grad_norm(self, model, max_norm: float) -> float:
        """Clip the gradients' joint norm to max_norm (inf: measure only); return the norm before clipping."""
        if self.numpy:
            return grad_optim.clip_grad_norm(model.parameters(), max_norm)
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()

    def evaluating(self):
        """The context to evaluate in: no graph is recorded, and autocast as in training."""
        if self.numpy:
            return grad_no_grad()
        return _Both(torch.no_grad(), self.autocast)

    # ---- random streams (dropout); the data order has its own generator in the trainer ------------
    def rng_state(self) -> dict:
        """The random streams dropout draws from, as JSON-able data."""
        if self.numpy:
            return {"numpy": grad_functional.default_generator.bit_generator.state}
        state = {"torch": rng_to_json(torch.get_rng_state())}
        if self.device_type == "cuda":
            state["cuda"] = rng_to_json(torch.cuda.get_rng_state())
        return state

    def set_rng_state(self, state: dict) -> None:
        if "torch" in state:
            torch.set_rng_state(rng_from_json(state["torch"]))
        if self.device_type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(rng_from_json(state["cuda"]))
        if self.numpy and "numpy" in state:
            grad_functional.default_generator.bit_generator.state = state["numpy"]

    # ---- optimizer state as plain tensors (what torch.load(weights_only=True) reads back) --------
    @staticmethod
    def optimizer_state(optimizer) -> dict:
        if isinstance(optimizer, grad_optim.Optimizer):
            return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
                    for k, v in optimizer.state_dict().items()}
        return optimizer.state_dict()

    @staticmethod
    def load_optimizer_state(optimizer, state: dict) -> None:
        if isinstance(optimizer, grad_optim.Optimizer):
            optimizer.load_state_dict({k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()})
        else:
            optimizer.load_state_dict(state)


def autocast_for(device: str, dtype: str):
    device_type = device.split(":")[0]
    if dtype == "auto":
        dtype = "bfloat16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype == "bfloat16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return nullcontext()


class _Both:
    """Two context managers as one (entered in order, left in reverse)."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __enter__(self):
        self.first.__enter__()
        self.second.__enter__()

    def __exit__(self, *exc):
        self.second.__exit__(*exc)
        return self.first.__exit__(*exc)


def rng_to_json(state: torch.Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def rng_from_json(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


__all__ = ["Engine", "autocast_for", "is_numpy", "rng_from_json", "rng_to_json"]
