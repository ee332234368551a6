"""How a torch model is spread over the ranks: whole on each (one process, or DDP), or sharded (FSDP2).

Each strategy answers the same questions for the Engine:
- `prepare(model)`: after building (FSDP2 shards the parameters here, before the optimizer sees them);
- `wrap(model)`: the module the loop trains through (DDP's wrapper; the model itself otherwise);
- `lockstep`: whether every rank must take part in every forward pass (FSDP2: evaluation too);
- `gradient_sync(last)`: the context of a micro-step; gradients are reduced across ranks only on
  the last micro-step of a step (DDP's no_sync, FSDP2's set_requires_gradient_sync);
- `full_model(model)`, `optimizer_state(...)`: a plain model and plain optimizer state for a
  checkpoint, the same in every mode (no `module.` or `_orig_mod.` prefixes, state keyed by the
  optimizer's parameter order), so a checkpoint resumes in any mode and on any number of ranks;
- `load_weights(...)`, `load_optimizer_state(...)`: the reverse.
With FSDP2, full_model and optimizer_state gather the shards: every rank must call them, and rank 0
gets the result (the others get None, and write nothing).
"""
from contextlib import contextmanager, nullcontext

import torch

from nanostack.models import build
from nanostack.models.engines import load_weights


def parallel_for(ranks, mode: str, device: str, param_dtype=None):
    """The strategy for these ranks: one process, DDP or FSDP2 (mode "ddp" or "fsdp")."""
    if not ranks.many:
        return Whole()
    if mode == "fsdp":
        return Sharded(ranks, param_dtype)
    return Replicated(ranks, device)


class Whole:
    """One process: the model as it is."""

    lockstep = False  # whether every rank must run every forward pass (FSDP2 gathers weights in each)

    def prepare(self, model):
        return model

    def wrap(self, model):
        return model

    def gradient_sync(self, last: bool):
        return nullcontext()

    def full_model(self, model):
        return model

    def load_weights(self, model, path) -> None:
        load_weights(model, path)

    def optimizer_state(self, model, optimizer) -> dict:
        return optimizer.state_dict()

    def load_optimizer_state(self, model, optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)


class Replicated(Whole):
    """DDP: every rank holds the whole model; gradients are averaged across ranks during the backward
    pass of a step's last micro-step (overlapping it)."""

    def __init__(self, ranks, device: str):
        self.ranks, self.device = ranks, device
        self.ddp = None

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

        on_cuda = self.device.startswith("cuda")
        self.ddp = DistributedDataParallel(model, device_ids=[self.ranks.local_rank] if on_cuda else None)
        return self.ddp

    def gradient_sync(self, last: bool):
        return nullcontext() if last or self.ddp is None else self.ddp.no_sync()


class Sharded(Whole):
    """FSDP2: each block's parameters (then the rest) are sharded across the ranks and gathered for
    its forward and backward; gradients are reduce-scattered, optimizer state stays sharded."""

    lockstep = True

    def __init__(self, ranks, param_dtype=None):
        self.ranks, self.param_dtype = ranks, param_dtype
        self.model = None
        self._twin = None

    def prepare(self, model):
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard  # noqa: PLC0415

        self._twin = None
        policy = MixedPrecisionPolicy(param_dtype=self.param_dtype, reduce_dtype=torch.float32) \
            if self.param_dtype is not None else MixedPrecisionPolicy()
        for block in model.transformer.h:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        self.model = model
        return model

    @contextmanager
    def gradient_sync(self, last: bool):
        self.model.set_requires_gradient_sync(last)
        yield

    def twin(self, model, dtype):
        """A plain CPU model of the same shape, to hold the gathered weights (built once; its random
        initialisation is overwritten, and the run's random streams are left untouched)."""
        if self._twin is None:
            with torch.random.fork_rng(devices=[]):
                self._twin = build(model.config).to(dtype)
        return self._twin

    def full_model(self, model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict  # noqa: PLC0415

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.ranks.main:
            return None
        twin = self.twin(model, next(iter(full.values())).dtype)
        twin.load_state_dict(full)
        return twin

    def load_weights(self, model, path) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict  # noqa: PLC0415

        dtype = next(p for p in model.parameters()).dtype
        twin = self.twin(model, dtype)
        load_weights(twin, path)  # every check of a plain load, then the shards
        set_model_state_dict(model, twin.state_dict(), options=StateDictOptions(full_state_dict=True))

    def optimizer_state(self, model, optimizer):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict  # noqa: PLC0415

        full = get_optimizer_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return plain_optimizer_state(full) if self.ranks.main else None

    def load_optimizer_state(self, model, optimizer, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict  # noqa: PLC0415

        names = {id(p): name for name, p in model.named_parameters()}
        order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        saved = sum(len(group["params"]) for group in state["param_groups"])
        if saved != len(order):
            raise ValueError(f"it holds state for {saved} parameters, the model has {len(order)}")
        named = {"state": {order[i]: v for i, v in state["state"].items()},
                 "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in state["param_groups"]]}
        set_optimizer_state_dict(model, optimizer, named, options=StateDictOptions(full_state_dict=True))


def plain_optimizer_state(named: dict) -> dict:
    """Optimizer state keyed by parameter name (distributed checkpointing's form) as torch's own
    optimizer.state_dict() keys it: by position in the parameter groups."""
    index = {}
    groups = []
    for group in named["param_groups"]:
        for name in group["params"]:
            index[name] = len(index)
        groups.append({**group, "params": [index[name] for name in group["params"]]})
    return {"state": {index[name]: value for name, value in named["state"].items()}, "param_groups": groups}
