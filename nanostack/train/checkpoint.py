"""What a training checkpoint holds, and the one place a run's random streams are saved and restored.

    latest/  weights, optimizer moments, state.json {step, best_val_loss, rng}   (to resume exactly)
    best/    weights, state.json {step, val_loss}                               (lowest val loss so far)

Every random draw of a run comes from two kinds of stream: the data order (its own generator)
and dropout (torch's global generator, CUDA's, or the numpy engine's). Restoring both with the
weights and optimizer state makes a resumed run take exactly the steps an uninterrupted one would.
The run folder (nanostack.run) writes and reads the files.
"""
import math

import torch

from nanostack.errors import UserError
from nanostack.train.backends import rng_from_json, rng_to_json


class RandomStreams:
    def __init__(self, seed: int, engine):
        self.data = torch.Generator().manual_seed(seed)  # batch offsets (or rows) and nothing else
        self.engine = engine

    def state(self) -> dict:
        return {"data": rng_to_json(self.data.get_state()), **self.engine.rng_state()}

    def restore(self, state: dict) -> None:
        self.data.set_state(rng_from_json(state["data"]))
        self.engine.set_rng_state(state)


def save_latest(run, model, optimizer, engine, streams: RandomStreams, step: int, best_val: float) -> None:
    state = {"step": step, "best_val_loss": best_val if math.isfinite(best_val) else None, "rng": streams.state()}
    run.save_checkpoint("latest", model, state, engine.optimizer_state(optimizer) if optimizer else None)


def save_best(run, model, step: int, val_loss: float) -> None:
    run.save_checkpoint("best", model, {"step": step, "val_loss": val_loss})


def restore_latest(run, model, optimizer, engine, streams: RandomStreams):
    """Load latest/ into model, optimizer and streams; return (step, best val loss so far)."""
    from nanostack.models.engines import load_weights  # noqa: PLC0415

    folder = run.checkpoint("latest")
    state = run.read_state(folder)
    try:
        step, best_val, rng = int(state["step"]), state.get("best_val_loss"), state["rng"]
        load_weights(model, folder / "model.safetensors")
        engine.load_optimizer_state(optimizer, run.optimizer_state(folder))
        streams.restore(rng)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"checkpoint {folder} is damaged ({type(e).__name__}: {e})",
                        "restore it, or start over with --force") from None
    return step, math.inf if best_val is None else float(best_val)
