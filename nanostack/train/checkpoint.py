"""Checkpoints: a folder per checkpoint, written whole under a temporary name and swapped in.

    RUN_DIR/latest/  model.safetensors, optimizer.pt, state.json   (to resume)
    RUN_DIR/best/    model.safetensors, state.json                 (lowest val loss so far)

Weights are safetensors; optimizer state is plain tensors and numbers, loaded with
weights_only=True; the rest is JSON. Nothing read back can run code.
"""
import base64
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from nanostack.errors import UserError
from nanostack.io import existing_dir, read_json, replace_dir, write_json
from nanostack.train.backends import load_optimizer_state, load_weights_into, optimizer_state, save_weights

RUN_FILES = ("config.json", "tokenizer.json", "metrics.jsonl", "latest", "best")


def save_checkpoint(run_dir: Path, name: str, model, state: dict, optimizer=None) -> None:
    tmp = run_dir / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(model, tmp / "model.safetensors")
    if optimizer is not None:
        torch.save(optimizer_state(optimizer), tmp / "optimizer.pt")
    write_json(tmp / "state.json", state)
    replace_dir(tmp, run_dir / name)


def find_checkpoint(run_dir: Path, name: str):
    """The folder of checkpoint `name` ("latest" or "best") in run_dir, or None."""
    return existing_dir(run_dir / name)


def load_weights(model, path: Path) -> None:
    """Load safetensors weights into a model (torch or numpy), with a clear error for every way the
    file can be wrong."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} is missing", "train the run first, or point at another run")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({e})",
                        "restore it, or retrain; the other checkpoint of the run may still be good") from None
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
    missing = load_weights_into(model, tensors)
    if missing:
        raise UserError(f"checkpoint {path} lacks weights {missing[:3]}", "it is from another model")


def load_optimizer(optimizer, path: Path) -> None:
    try:
        load_optimizer_state(optimizer, torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # torch raises many kinds for a damaged file
        raise UserError(f"optimizer state {path} is missing or corrupt ({type(e).__name__})",
                        "restore it, or start a new run") from None


def read_state(folder: Path) -> dict:
    return read_json(folder / "state.json", "checkpoint state")


def rng_to_json(state: torch.Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def rng_from_json(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def clear_run(run_dir: Path) -> None:
    """Remove a previous run's files (and only those) from run_dir, for --force."""
    for name in RUN_FILES:
        for path in run_dir.glob(f"{name}*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
