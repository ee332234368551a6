"""Engine: what the training loop must not know about the engine and device it runs on.

The loop sees `model(x, y) -> (logits, loss)`, `loss.backward()` and an optimizer with
`param_groups`, `step()` and `zero_grad()`, on torch or on nanostack.grad's numpy Tensor.
What differs is here: the device and its autocast, torch.compile, building the optimizer,
gradient clipping, the no-grad context for evaluation, the random streams dropout draws from, how
optimizer state becomes plain tensors for a checkpoint, and how the model is spread over several
ranks (parallel.py; one process: nothing). On CUDA the defaults are the fast path: bf16 autocast,
torch.compile, the fused optimizer, a chunked cross-entropy (the GPT's loss_only), and one host
sync per step (the loss stays on the device until the step's numbers are read together).
"""
import base64
import os
import shutil
from contextlib import nullcontext
from functools import partial

import numpy as np
import torch

from nanostack.cpu import keep_freed_memory
from nanostack.grad import functional as grad_functional
from nanostack.grad import no_grad as grad_no_grad
from nanostack.grad import optim as grad_optim
from nanostack.models.engines import build_model, is_numpy, load_weights, resolve_device
from nanostack.train.distributed import Ranks, stream_seed
from nanostack.train.optimizer import make_optimizer
from nanostack.train.parallel import Whole, parallel_for


class Engine:
    def __init__(self, backend: str, device: str = "auto", dtype: str = "auto", compile="false", ranks=None,
                 parallel: str = "ddp"):
        self.backend = backend
        self.numpy = backend == "numpy"
        self.ranks = ranks or Ranks()
        self.device = "cpu" if self.numpy else resolve_device(self.ranks.device(device))
        self.device_type = self.device.split(":")[0]
        # compile: "auto" (on CUDA only), "true" or "false" (True and False too)
        self.compile = compile in (True, "true") or (compile == "auto" and self.device_type == "cuda")
        self.notes = []  # for the trainer's log
        if self.compile and self.device_type == "cpu" and not cpp_compiler():
            self.compile = False
            self.notes.append("torch.compile on a CPU builds C++ and no C++ compiler (g++, clang++) was found: "
                              "training without compiling (slower); install g++ to compile")
        self.float64 = dtype == "float64"
        self.autocast = autocast_for(self.device, dtype)
        self.parallel = Whole() if self.numpy else \
            parallel_for(self.ranks, parallel, self.device, getattr(self.autocast, "fast_dtype", None))
        self.loss_only = self.device_type == "cuda"  # train through the chunked cross-entropy where a model has it
        if self.device_type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if self.device_type == "cpu":
            keep_freed_memory()

    def build_model(self, model_config, seed: int):
        """The model, the same on every rank (FSDP2: sharded already); ranks after 0 then reseed their
        dropout streams, so they drop different units."""
        model = build_model(self.backend, model_config, seed, self.device)
        if self.numpy:
            return model
        if self.float64:
            model = model.double()
        if not self.ranks.main:
            torch.manual_seed(stream_seed(seed, 0, self.ranks.rank))
        return self.parallel.prepare(model)

    def for_training(self, model):
        """The callable the loop trains through: the model, wrapped for several ranks (DDP), compiled
        (torch.compile), and asked for its loss only where it can give it without the batch's logits."""
        train_model = self.parallel.wrap(model)
        if self.compile:
            train_model = torch.compile(train_model)
        if self.loss_only and getattr(model, "accepts_loss_only", False):
            train_model = partial(train_model, loss_only=True)
        return train_model

    def gradient_sync(self, last: bool):
        """The context of one micro-step: with several ranks, gradients are reduced on the last one only."""
        return self.parallel.gradient_sync(last)

    # ---- the step's numbers: kept on the device, read once per step -----------------------------------
    def add_loss(self, total, loss):
        """total + a micro-batch's loss without a host sync (a device scalar, float64 where the device
        has it, so the sum is the one a Python float would hold); the numpy engine adds floats."""
        if self.numpy:
            return total + loss.item()
        return total + loss.detach().to(torch.float32 if self.device_type == "mps" else torch.float64)

    def read_numbers(self, *values) -> list:
        """Device scalars (and None or plain numbers) as Python floats, in one host sync."""
        on_device = [v for v in values if isinstance(v, torch.Tensor)]
        if on_device:
            host = iter(torch.stack([v.detach().to(on_device[0].dtype) for v in on_device]).tolist())
        return [next(host) if isinstance(v, torch.Tensor) else v for v in values]

    # ---- weights and optimizer state, plain in every parallel mode ------------------------------------
    def plain_model(self, model):
        """The model with all its weights, to save (with FSDP2: gathered; None on ranks after 0)."""
        return self.parallel.full_model(model)

    def load_weights(self, model, path) -> None:
        if self.numpy:
            load_weights(model, path)
        else:
            self.parallel.load_weights(model, path)

    def optimizer(self, model, learning_rate, weight_decay, betas, kind="adamw", muon_lr=0.02, muon_momentum=0.95):
        return make_optimizer(model, learning_rate, weight_decay, betas, self.device_type, numpy=self.numpy, kind=kind,
                              muon_lr=muon_lr, muon_momentum=muon_momentum)

    def clip_grad_norm(self, model, max_norm: float):
        """Clip the gradients' joint norm to max_norm (inf: measure only); return the norm before clipping
        (a device scalar on torch: read it with read_numbers)."""
        if self.numpy:
            return grad_optim.clip_grad_norm(model.parameters(), max_norm)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a DTensor

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
    def optimizer_state(self, optimizer, model) -> dict:
        if isinstance(optimizer, grad_optim.Optimizer):
            return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
                    for k, v in optimizer.state_dict().items()}
        return self.parallel.optimizer_state(model, optimizer)

    def load_optimizer_state(self, optimizer, state: dict, model) -> None:
        if isinstance(optimizer, grad_optim.Optimizer):
            optimizer.load_state_dict({k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()})
        else:
            self.parallel.load_optimizer_state(model, optimizer, state)


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


def cpp_compiler():
    """The C++ compiler torch.compile's CPU code would be built with ($CXX, g++, clang++), or None."""
    candidates = [name for name in (os.environ.get("CXX"), "g++", "clang++", "c++") if name]
    return next(filter(None, map(shutil.which, candidates)), None)


__all__ = ["Engine", "autocast_for", "is_numpy", "rng_from_json", "rng_to_json"]
