"""Fine-tuning: a new run that starts from another run's weights (`--init-from RUN`; an imported run,
for instance). The model's shape and the tokenizer are that run's (a flag asking for another shape
is refused); the data, the schedule, dropout and everything else are the new run's own, and its
optimizer starts fresh. Only the start differs from a run of its own: resuming it resumes it.
"""
from dataclasses import fields, replace

from nanostack.errors import UserError
from nanostack.models import ModelConfig
from nanostack.run import RunFolder
from nanostack.run.config import FIELDS

NOT_SHAPE = ("vocab_size", "kind", "dropout")  # what the tokenizer gives, the kind (--model), a training choice


def shape_fields() -> list:
    """The settings that fix the model's shape: ModelConfig's fields that are also train settings."""
    return ["model"] + [f.name for f in fields(ModelConfig) if f.name not in NOT_SHAPE and f.name in FIELDS]


def with_init_from(cfg, overrides: dict):
    """cfg with the shape and tokenizer of the run it starts from."""
    source = RunFolder(cfg.init_from)
    if not source.is_run():
        raise UserError(f"--init-from {cfg.init_from} is not a run folder (no config.json)",
                        "give a folder written by `nanostack train` or `nanostack import`")
    theirs = source.model_config()
    values = {}
    for name in shape_fields():
        value = theirs.kind if name == "model" else getattr(theirs, name)
        if name in overrides and getattr(cfg, name) != value:
            raise UserError(f"{name.replace('_', '-')} comes from --init-from {source.path} ({value!r}), "
                            f"and you asked for {getattr(cfg, name)!r}",
                            f"drop --{name.replace('_', '-')} to fine-tune that model")
        values[name] = value
    if "tokenizer" in overrides:
        raise UserError(f"the tokenizer comes from --init-from {source.path}", "drop --tokenizer to fine-tune it")
    return replace(cfg, **values, tokenizer=str((source.path / "tokenizer.json").resolve()),
                   init_from=str(source.path.resolve()))


def starting_weights(init_from: str, log=print):
    """The weights file a fine-tuning run starts from: the run's best checkpoint (else its latest)."""
    source = RunFolder(init_from).require_run()
    folder = source.checkpoint_for_reading("best")
    log(f"starting from the weights of {source.path} ({folder.name}/, step {source.read_state(folder).get('step')})")
    return folder / "model.safetensors"
