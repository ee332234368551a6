"""The two engines a run can train on: torch, and nanostack.grad's numpy Tensor (the from-scratch twin).

Both show the trainer the same surface: `model(x, y) -> (logits, loss)`, `loss.backward()`,
`loss.item()`, and an optimizer with `param_groups`, `step()` and `zero_grad()`. What differs is
collected here: building the model and optimizer, gradient clipping, the no-grad context, the
dropout random stream, and how weights and optimizer state become files. Both write the same
safetensors weights under the same names, so a checkpoint trained on one samples on the other.
"""
from contextlib import nullcontext

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy_weights
from safetensors.torch import save_model

from nanostack.grad import functional as grad_functional
from nanostack.grad import nn as grad_nn
from nanostack.grad import no_grad as grad_no_grad
from nanostack.grad import optim as grad_optim
from nanostack.models import ModelConfig, build
from nanostack.models.gpt_numpy import NumpyGPT, to_tensor_dict
from nanostack.models.mlp_numpy import NumpyMLP
from nanostack.train.optim import make_optimizer


NUMPY_MODELS = {"transformer": NumpyGPT, "mlp": NumpyMLP}


def is_numpy(model) -> bool:
    return isinstance(model, grad_nn.Module)


def build_model(backend: str, config: ModelConfig, seed: int, device: str = "cpu"):
    """A freshly initialised model of config.kind (numpy: the transformer or the MLP); the seed fixes
    the initial weights and the dropout stream."""
    if backend == "numpy":
        grad_nn.manual_seed(seed)
        return NUMPY_MODELS[config.kind](config)
    torch.manual_seed(seed)
    return build(config).to(device)


def build_optimizer(model, learning_rate, weight_decay, betas, device_type):
    """AdamW with weight decay on matrices and embeddings only, for either engine."""
    if not is_numpy(model):
        return make_optimizer(model, learning_rate, weight_decay, betas, device_type)
    params = model.parameters()
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return grad_optim.AdamW(groups, lr=learning_rate, betas=betas)


def clip_grad_norm(model, max_norm: float) -> float:
    if is_numpy(model):
        return grad_optim.clip_grad_norm(model.parameters(), max_norm)
    return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()


def no_grad(model):
    """A context in which a numpy model records no graph (torch callers use torch.no_grad)."""
    return grad_no_grad() if is_numpy(model) else nullcontext()


def dropout_rng_state(model):
    """The random stream dropout draws from, as JSON-able data."""
    if is_numpy(model):
        return grad_functional.default_generator.bit_generator.state
    return None  # torch's global generator is saved by the trainer alongside the data stream


def set_dropout_rng_state(model, state) -> None:
    if is_numpy(model) and state is not None:
        grad_functional.default_generator.bit_generator.state = state


def save_weights(model, path) -> None:
    if is_numpy(model):
        save_numpy_weights(to_tensor_dict(model) if isinstance(model, NumpyGPT) else model.state_dict(), str(path))
    else:
        save_model(model, str(path))  # stores tied weights once


def load_weights_into(model, tensors: dict) -> list:
    """Copy checked weights (torch tensors by name) into model; returns the names it still lacks."""
    if is_numpy(model):
        params = dict(model.named_parameters(keep_duplicates=True))
        given = {id(params[k]) for k in tensors}
        missing = [k for k, p in params.items() if id(p) not in given]  # a tied weight needs one of its names
        if not missing:
            model.load_state_dict({k: v.numpy() for k, v in tensors.items()})
        return missing
    missing, _ = model.load_state_dict(tensors, strict=False)
    expected = model.state_dict()
    loaded = {expected[k].data_ptr() for k in tensors}
    return [k for k in missing if expected[k].data_ptr() not in loaded]  # tied weights load through their twin


def optimizer_state(optimizer) -> dict:
    """What torch.save writes: plain tensors and numbers only, so it loads with weights_only=True."""
    if isinstance(optimizer, grad_optim.Optimizer):
        return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
                for k, v in optimizer.state_dict().items()}
    return optimizer.state_dict()


def load_optimizer_state(optimizer, state: dict) -> None:
    if isinstance(optimizer, grad_optim.Optimizer):
        optimizer.load_state_dict({k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()})
    else:
        optimizer.load_state_dict(state)
