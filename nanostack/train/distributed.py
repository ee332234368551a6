"""Many processes, one run: torchrun's ranks, and what only rank 0 may do.

`torchrun --nproc_per_node=N -m nanostack train ...` starts N copies of the trainer; torchrun sets
RANK, WORLD_SIZE and LOCAL_RANK, and `Ranks.join()` turns them into one process group (gloo for
CPU tensors, nccl for CUDA ones). Without torchrun there is one rank and nothing here does anything:
a one-process run is exactly what it was before this module existed.

The rules every rank follows:
- Rank 0 checks the folder and the settings alone, and every rank gets its answer (`from_main`):
  a refusal is one line, printed by rank 0 only.
- Rank 0 alone holds the run folder's lock and writes: the others see the folder through
  `FollowerRun`, which reads and never writes (`view`). Rank 0 alone logs.
- `gradient_accumulation_steps` counts the micro-batches of the whole step, across ranks (as in
  nanoGPT): each rank runs gradient_accumulation_steps / WORLD_SIZE of them, so the same settings
  give the same run on any number of ranks (sampler.py deals the batches out).
- A run resumed on another number of ranks is re-sharded, not refused: the data order is global,
  so it continues exactly; only the dropout streams of ranks that did not exist are seeded anew,
  from (seed, step, rank).

How the model is spread over the ranks (DDP or FSDP2) is parallel.py's.
"""
import os
from contextlib import nullcontext

import torch

from nanostack.errors import UserError


class Ranks:
    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, joined: bool = False):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.main = rank == 0
        self.many = world_size > 1
        self._joined = joined  # this object started the process group, and ends it

    def __repr__(self):
        return f"Ranks(rank={self.rank}, world_size={self.world_size})"

    @classmethod
    def join(cls) -> "Ranks":
        """The ranks torchrun started (RANK, WORLD_SIZE, LOCAL_RANK), joined into one process group;
        one rank when they are not set."""
        world_size = _env_int("WORLD_SIZE", 1)
        if world_size <= 1:
            return cls()
        rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
        import torch.distributed as dist  # noqa: PLC0415

        joined = not dist.is_initialized()
        if joined:
            if torch.cuda.is_available():
                torch.cuda.set_device(local_rank)
                dist.init_process_group("cpu:gloo,cuda:nccl")  # CPU tensors through gloo, CUDA ones through nccl
            else:
                dist.init_process_group("gloo")
        return cls(rank, world_size, local_rank, joined)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._joined:
            import torch.distributed as dist  # noqa: PLC0415

            dist.destroy_process_group()
            self._joined = False
        return False

    # ---- who does what ------------------------------------------------------------------------------
    def view(self, run):
        """The run folder as this rank may use it: rank 0 owns it, the others only read it."""
        return run if self.main else FollowerRun(run, self.rank)

    def log(self, log):
        return log if self.main else _quiet

    def device(self, requested: str) -> str:
        """This rank's device: with several ranks on CUDA, cuda:LOCAL_RANK."""
        if not self.many:
            return requested
        if requested.startswith("cuda:") or requested == "mps":
            raise UserError(f"--device {requested} cannot be shared by {self.world_size} ranks",
                            "use --device auto or cuda (each rank takes cuda:LOCAL_RANK), or cpu")
        if requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return "cpu" if requested == "auto" else requested

    def from_main(self, fn, *args):
        """fn(*args) computed by rank 0 and given to every rank; if it fails there, it fails everywhere
        (the other ranks exit quietly with the same exit code; rank 0 says why)."""
        return self._on_main(fn, args, share=True)

    def main_first(self, fn, *args):
        """fn(*args) on every rank, rank 0 first (it may fill a cache the others then read); if it fails
        on rank 0, the others do not try."""
        result = self._on_main(fn, args, share=False)
        return result if self.main else fn(*args)

    def _on_main(self, fn, args, share: bool):
        if not self.many:
            return fn(*args)
        box, error, result = [None], None, None
        if self.main:
            try:
                result = fn(*args)
                box = [("ok", result if share else None)]
            except UserError as e:
                error, box = e, [("user", e.message, e.hint)]
            except BaseException as e:  # noqa: BLE001 (the others must not wait for an answer that never comes)
                error, box = e, [("failed", f"{type(e).__name__}: {e}")]
        self._broadcast(box)
        if error is not None:
            raise error
        outcome = box[0]
        if outcome[0] == "ok":
            return result if self.main else outcome[1]
        if outcome[0] == "user":
            raise everywhere(UserError(outcome[1], outcome[2]))
        raise SystemExit(1)

    def agree(self, flag: bool) -> bool:
        """True on every rank if it is true on any (a Ctrl-C seen by one rank stops them all together)."""
        if not self.many:
            return flag
        import torch.distributed as dist  # noqa: PLC0415

        t = torch.tensor([1 if flag else 0], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over the ranks (the tensor itself with one rank)."""
        if not self.many:
            return tensor
        import torch.distributed as dist  # noqa: PLC0415

        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, obj) -> list:
        """Every rank's obj, in rank order (JSON-able values; on every rank)."""
        if not self.many:
            return [obj]
        import torch.distributed as dist  # noqa: PLC0415

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def _broadcast(self, box: list) -> None:
        import torch.distributed as dist  # noqa: PLC0415

        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))


def check_parallel_settings(cfg, world_size: int) -> None:
    """What several ranks cannot do with these settings: one line naming the problem and the fix."""
    if world_size <= 1:
        return
    if cfg.backend == "numpy":
        raise UserError(f"the numpy backend trains in one process, not {world_size}",
                        "run it without torchrun, or use --backend torch")
    if cfg.gradient_accumulation_steps % world_size:
        raise UserError(f"gradient_accumulation_steps ({cfg.gradient_accumulation_steps}) counts the micro-batches of "
                        f"a step across all ranks, and {world_size} ranks do not divide it",
                        f"set --gradient-accumulation-steps to a multiple of {world_size}")
    if cfg.parallel == "fsdp" and getattr(cfg, "optimizer", "adamw") == "muon":
        raise UserError("Muon needs whole weight matrices, and --parallel fsdp shards them",
                        "use --parallel ddp with Muon, or --optimizer adamw with FSDP")
    if getattr(cfg, "ema", 0):
        raise UserError("--ema keeps one process's copy of the weights; several ranks do not average it",
                        "drop --ema under torchrun, or train in one process")
    if getattr(cfg, "examples", "") == "chat":  # a batch with no trained token is skipped, by one rank alone
        raise UserError("--examples chat trains in one process: a rank whose batch has no trained token skips it, "
                        "and ranks must step together", "train conversations without torchrun")
    if cfg.parallel == "fsdp" and getattr(cfg, "init", ""):
        raise UserError("--init loads the base run's weights into a whole model, and --parallel fsdp shards it",
                        "fine-tune with --parallel ddp, or in one process")
    if cfg.parallel == "fsdp" and cfg.model != "transformer":
        raise UserError(f"--parallel fsdp shards the transformer's blocks; the {cfg.model} has none",
                        "use --parallel ddp")


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun): who prints a command's result."""
    return _env_int("RANK", 0)


def stream_seed(seed: int, step: int, rank: int) -> int:
    """The seed of a dropout stream that has no saved state: rank r's at the start of a run, or a rank
    that a re-sharded resume added."""
    return (seed * 1_000_003 + step * 7919 + rank) % (2 ** 63)


def everywhere(error: UserError) -> UserError:
    """Mark an error that every rank raises alike: only rank 0 prints it."""
    error.everywhere = True
    return error


class FollowerRun:
    """A run folder as a rank other than 0 sees it: every read of RunFolder, and writes that go
    nowhere (rank 0 writes the same things). It takes no lock and creates no file."""

    READS = ("path", "is_run", "foreign_files", "require_run", "config", "train_config", "model_config",
             "data_hash", "data_kind", "example_boundary", "tokenizer", "checkpoint", "checkpoint_for_reading",
             "read_state", "optimizer_state", "load_model", "dataset", "metrics")
    WRITES = ("write_config", "write_tokenizer", "save_checkpoint", "truncate_metrics", "clear")

    def __init__(self, run, rank: int):
        self._run, self._rank = run, rank

    def __repr__(self):
        return f"FollowerRun({str(self._run.path)!r}, rank={self._rank})"

    def __getattr__(self, name):
        if name in self.READS:
            return getattr(self._run, name)
        if name in self.WRITES:
            return _quiet
        raise AttributeError(f"rank {self._rank} may read the run folder, not call {name!r} on it")

    def lock(self):
        return nullcontext(self)

    def open_metrics(self):
        return nullcontext(_NoFile())


class _NoFile:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


def _quiet(*args, **kwargs):
    return None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UserError(f"{name}={value!r} is not a whole number", "launch with torchrun, or unset it") from None
