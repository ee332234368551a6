"""The two engines a model can run on: torch, and nanostack.grad's numpy Tensor (the from-scratch twin).

What differs between them for building, storing and sampling a model is collected here:
building a model of a config on either engine, writing and reading its weights (both write the
same safetensors under the same names, so a checkpoint made by one loads on the other), and a
facade that lets the one sampler drive a numpy model. Training specifics (optimizers, clipping,
random streams) are the trainer's: train/backends.py.
"""
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import save_file as save_numpy_weights
from safetensors.torch import load_file, save_model

from nanostack.errors import UserError
from nanostack.grad import nn as grad_nn
from nanostack.grad import no_grad as grad_no_grad
from nanostack.models import ModelConfig, build
from nanostack.models.config import NUMPY_KINDS, numpy_support_problem
from nanostack.models.generation import generate
from nanostack.models.gpt_numpy import NumpyGPT, to_tensor_dict
from nanostack.models.mlp_numpy import NumpyMLP

BACKENDS = ("torch", "numpy")
NUMPY_MODELS = {"transformer": NumpyGPT, "mlp": NumpyMLP}
assert tuple(NUMPY_MODELS) == NUMPY_KINDS


def resolve_device(name: str) -> str:
    """The device a run or a sampler uses: auto picks cuda, then mps, then cpu; one that is not there
    is an error naming the ones that are."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name} was asked for but CUDA is not available", "use --device cpu or auto")
        if name.startswith("cuda:") and not (name[5:].isdigit() and int(name[5:]) < torch.cuda.device_count()):
            raise UserError(f"there is no device {name}", f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        return name
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("device mps was asked for but MPS is not available", "use --device cpu or auto")
        return name
    raise UserError(f"unknown device {name!r}", "use auto, cpu, cuda, cuda:N or mps")


def is_numpy(model) -> bool:
    return isinstance(model, grad_nn.Module)


def build_model(backend: str, config: ModelConfig, seed: int, device: str = "cpu"):
    """A freshly initialised model of config.kind on `backend`; the seed fixes the initial weights
    (and, on numpy, the dropout stream)."""
    problem = config.problem()
    if problem:
        raise UserError(f"cannot build the model: {problem}", "fix the model settings")
    problem = numpy_support_problem(config.kind, config.batchnorm, config.modern_options()) if backend == "numpy" else None
    if problem:
        raise UserError(f"cannot build the model: {problem}", "use --backend torch")
    try:
        if backend == "numpy":
            grad_nn.manual_seed(seed)
            return NUMPY_MODELS[config.kind](config)
        torch.manual_seed(seed)
        return build(config).to(device)
    except (RuntimeError, MemoryError, ValueError) as e:  # e.g. sizes too large for this machine's memory
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot build the model ({first_line[:200]})", "use smaller sizes") from None


def save_weights(model, path) -> None:
    if is_numpy(model):
        save_numpy_weights(to_tensor_dict(model) if isinstance(model, NumpyGPT) else model.state_dict(), str(path))
    else:
        save_model(model, str(path))  # stores tied weights once


def load_weights(model, path) -> None:
    """Load safetensors weights into a model (torch or numpy), with a clear error for every way the
    file can be wrong."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} is missing", "train the run first, or point at another run")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({e})",
                        "restore it, or retrain; the other checkpoint of the run may still be good") from None
    load_tensors(model, tensors, path)


def load_tensors(model, tensors: dict, path) -> None:
    """Load weights given as {name: torch tensor} (read from checkpoint `path`) into a model, checked."""
    expected = model.state_dict()
    for key, tensor in tensors.items():
        if key not in expected:
            raise UserError(f"checkpoint {path} has weight {key!r} this model lacks", "it is from another model")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            if key in ("lm_head.weight", "transformer.wte.weight"):
                raise UserError(
                    f"checkpoint {path} is for a vocabulary of {tensor.shape[0]} tokens, "
                    f"but this run's tokenizer has {expected[key].shape[0]}",
                    "use the checkpoint with the run (and tokenizer) it was trained with")
            raise UserError(f"checkpoint {path}: {key} has shape {tuple(tensor.shape)}, "
                            f"the model expects {tuple(expected[key].shape)}", "the config does not match it")
    missing = _load_into(model, tensors)
    if missing:
        raise UserError(f"checkpoint {path} lacks weights {missing[:3]}", "it is from another model")


def _load_into(model, tensors: dict) -> list:
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


class TorchFacade:
    """A numpy model (NumpyGPT, NumpyMLP) behind the interface that generation uses: torch ids in,
    torch logits out. It lets the one sampler serve both engines."""

    def __init__(self, model):
        self.model, self.config = model, model.config

    def __call__(self, idx, targets=None):
        with grad_no_grad():
            logits, loss = self.model(idx.cpu().numpy(), None if targets is None else targets.cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(logits.data)), None if loss is None else torch.tensor(loss.item())

    @property
    def training(self):
        return self.model.training

    def train(self, mode=True):
        self.model.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def parameters(self):
        return self.model.parameters()

    def buffers(self):
        return []

    def num_params(self) -> int:
        return self.model.num_params()

    def generate(self, idx, max_new_tokens: int, **sampling):
        return generate(self, idx, max_new_tokens, **sampling)


def for_inference(model, device="cpu"):
    """A loaded model ready to evaluate and sample, in eval mode, behind torch's interface."""
    if is_numpy(model):
        return TorchFacade(model.eval())
    return model.to(device).eval()
