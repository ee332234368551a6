"""What a training checkpoint holds, and the one place a run's random streams are saved and restored.

    latest/  weights, optimizer moments, state.json {step, best_val_loss, rng}   (to resume exactly)
    best/    weights, state.json {step, val_loss}                               (lowest val loss so far)

Every random draw of a run comes from two kinds of stream: the data order (its own generator)
and dropout (torch's global generator, CUDA's, or the numpy engine's). Restoring both with the
weights and optimizer state makes a resumed run take exactly the steps an uninterrupted one would.
With several ranks the data stream is one and the same on all of them (sampler.py), and each rank
has a dropout stream of its own: state.json keeps them all under "ranks". Weights and optimizer
state are written plain in every parallel mode (Engine.plain_model), so a checkpoint resumes
anywhere. The run folder (nanostack.run) writes and reads the files; with several ranks, every
rank calls these functions (gathering is collective) and only rank 0's run folder writes.
"""
import math

import torch

from nanostack.errors import UserError
from nanostack.train.backends import rng_from_json, rng_to_json
from nanostack.train.distributed import stream_seed


class RandomStreams:
    def __init__(self, seed: int, engine):
        self.data = torch.Generator().manual_seed(seed)  # batch offsets (or rows) and nothing else
        self.engine = engine
        self.seed = seed

    def state(self) -> dict:
        state = {"data": rng_to_json(self.data.get_state()), **self.engine.rng_state()}
        if self.engine.ranks.many:
            state["ranks"] = self.engine.ranks.gather(self.engine.rng_state())
        return state

    def restore(self, state: dict, step: int = 0) -> None:
        """The saved streams; a rank the saved run did not have (a resume on more ranks) gets a dropout
        stream seeded from (seed, step, rank)."""
        self.data.set_state(rng_from_json(state["data"]))
        ranks = self.engine.ranks
        saved = state.get("ranks") or [state]
        if ranks.rank < len(saved):
            self.engine.set_rng_state(saved[ranks.rank])
        else:
            torch.manual_seed(stream_seed(self.seed, step, ranks.rank))


def save_latest(run, model, optimizer, engine, streams: RandomStreams, step: int, best_val: float) -> None:
    state = {"step": step, "best_val_loss": best_val if math.isfinite(best_val) else None, "rng": streams.state()}
    if engine.ranks.many:
        state["world_size"] = engine.ranks.world_size
    optimizer_state = engine.optimizer_state(optimizer, model) if optimizer else None
    run.save_checkpoint("latest", engine.plain_model(model), state, optimizer_state)


def save_best(run, model, engine, step: int, val_loss: float) -> None:
    run.save_checkpoint("best", engine.plain_model(model), {"step": step, "val_loss": val_loss})


def restore_latest(run, model, optimizer, engine, streams: RandomStreams, log=print):
    """Load latest/ into model, optimizer and streams; return (step, best val loss so far)."""
    folder = run.checkpoint("latest")
    state = run.read_state(folder)
    saved_ranks = state.get("world_size", 1) if isinstance(state, dict) else 1
    if saved_ranks != engine.ranks.world_size:
        log(f"note: the run trained on {saved_ranks} rank(s) and resumes on {engine.ranks.world_size}: the data "
            "order continues exactly; dropout streams of ranks it did not have start from (seed, step, rank)")
    try:
        step, best_val, rng = int(state["step"]), state.get("best_val_loss"), state["rng"]
        engine.load_weights(model, folder / "model.safetensors")
        engine.load_optimizer_state(optimizer, run.optimizer_state(folder), model)
        streams.restore(rng, step)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"checkpoint {folder} is damaged ({type(e).__name__}: {e})",
                        "restore it, or start over with --force") from None
    return step, math.inf if best_val is None else float(best_val)
