"""Starting a run in a folder: a new run, a new run over an old one (--force), or a resumed one
(--resume), and what each may do with the folder. Nothing here writes: the checks come first.

- A new run needs a folder that is missing, empty, or holds only nanostack's own leftovers.
- --force may replace a run; the trainer then removes the run's own files only (a user's files stay),
  once the new run's data and model are ready.
- --resume continues from latest/. A run killed before its first checkpoint was complete starts again
  from step 0 (nothing was saved to lose, and the log says so); a run whose latest/ is gone although it
  went past its first checkpoint (by its metrics or its best/) is refused, never silently started over.
  Settings that fix the model's shape or the meaning of its token ids cannot change on resume. An imported run has no data or optimizer state to
  resume: it is fine-tuned instead (--init, init_from.py).
- With several ranks (torchrun), rank 0 runs these checks alone and the settings must suit the ranks
  (distributed.check_parallel_settings).
"""
from dataclasses import replace
from pathlib import Path

from nanostack.errors import UserError
from nanostack.run.config import make_config
from nanostack.train.distributed import check_parallel_settings

# settings a resumed run cannot change: they fix the weights' shapes, or what the data and its ids are
FIXED_ON_RESUME = ("model", "n_layer", "n_head", "n_embd", "n_embd2", "block_size", "bias", "batchnorm", "context",
                   "data", "tokenizer", "examples", "backend", "seed", "init",
                   "rotary", "rmsnorm", "qk_norm", "activation", "untied_head", "zero_init", "optimizer", "ema")


def settle_config(run, overrides: dict, preset, resume: bool, force: bool, world_size: int = 1):
    """The run's config, after checking that the folder may be used this way (and by this many ranks)."""
    cfg = _settled(run, overrides, preset, resume, force)
    check_parallel_settings(cfg, world_size)
    return cfg


def _settled(run, overrides: dict, preset, resume: bool, force: bool):
    if resume and force:
        raise UserError("--resume and --force ask for opposite things",
                        "use --resume to continue the run, or --force to start it over")
    if run.path.exists() and not run.path.is_dir():
        raise UserError(f"--out {run.path} is a file", "give a folder for the run")
    if resume:
        return _resumed(run, overrides, preset)
    cfg = make_config(preset, overrides)
    if run.is_run() and not force:
        raise UserError(f"run folder {run.path} already holds a run",
                        "pass --resume to continue it, --force to start over, or choose another --out")
    foreign = run.foreign_files()
    if foreign and not run.is_run():
        raise UserError(f"--out {run.path} is a non-empty folder that is not a nanostack run "
                        f"(it holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''})",
                        "choose another --out")
    return _with_absolute_paths(cfg)


def _resumed(run, overrides: dict, preset):
    if not run.is_run():
        raise UserError(f"there is no run to resume at {run.path}", "drop --resume to start a new run there")
    if run.config.get("imported"):
        raise UserError(f"{run.path} was imported ({run.config['imported'].get('from', 'from elsewhere')}): it has no "
                        "training data or optimizer state to resume",
                        f"fine-tune it instead: nanostack train --init {run.path} --data TEXT --out NEW_RUN")
    saved = run.train_config()
    trained = max((r["step"] for r in run.metrics()), default=0)
    best = run.checkpoint("best")
    best_step = run.read_state(best).get("step", 0) if best is not None else 0
    if run.checkpoint("latest") is None and max(trained, best_step) > saved.ckpt_interval:
        # the first latest/ was written (the run went past it): starting over would lose what it holds
        raise UserError(f"{run.path} holds a run that has trained (its metrics reach step {trained}) but its "
                        "latest/ checkpoint is missing, so it cannot be resumed",
                        "restore latest/, or start over with --force")
    cfg = make_config(preset, overrides, base=saved)
    asked = _with_absolute_paths(cfg)  # a relative path to the same data is the same data
    if cfg.backend != saved.backend:
        raise UserError(f"{run.path} was trained with the {saved.backend} backend, not {cfg.backend}",
                        f"resume with --backend {saved.backend}, or start a new run (its weights load on either)")
    for name in FIXED_ON_RESUME:
        before, after = getattr(saved, name), getattr(asked, name)
        if after != before and name in (set(overrides) | set(_preset_keys(preset))):
            raise UserError(f"{name.replace('_', '-')} cannot change on --resume (the run has {before!r}, "
                            f"you asked for {after!r})",
                            f"drop --{name.replace('_', '-')} to resume, or start a new run with another --out")
    return cfg


def _preset_keys(preset) -> list:
    if not preset:
        return []
    from nanostack.run.config import load_preset  # noqa: PLC0415

    return list(load_preset(preset))


def _absolute_data(value: str) -> str:
    """A data path as an absolute path (so a run can be evaluated and resumed from any directory);
    a built-in corpus name stays as it is."""
    from nanostack.data import BUILTINS  # noqa: PLC0415

    path = Path(value).expanduser()
    return value if value in BUILTINS or not path.exists() else str(path.resolve())


def _absolute_tokenizer(value: str) -> str:
    from nanostack.tokenizer import TokenizerSpec  # noqa: PLC0415

    spec = TokenizerSpec.parse(value)
    return str(spec.path) if spec.kind == "file" else value


def _with_absolute_paths(cfg):
    init = str(Path(cfg.init).expanduser().resolve()) if cfg.init else cfg.init  # as settle_init stores it
    return replace(cfg, data=_absolute_data(cfg.data), tokenizer=_absolute_tokenizer(cfg.tokenizer), init=init)
