"""--init BASE_RUN: start a new run from a trained run's weights and tokenizer (fine-tuning).

The new run takes the base run's model shape (an explicit flag that disagrees is refused) and its
tokenizer. For conversations (--examples chat) the tokenizer gains the chat special tokens it lacks,
with ids after its own, so every old id keeps its meaning; the model's vocabulary grows to match.
Each weight that has a vocabulary dimension (the token embedding, a separate output layer, an output
bias, a bigram table) keeps the base run's rows, and every new row starts as the mean of them: a
new token begins as an average token, neither loud nor silent in the logits, and its own gradient
moves it from there.
"""
from dataclasses import fields, replace
from pathlib import Path

import torch

from nanostack.data.chat_format import CHAT_TOKENS
from nanostack.errors import UserError
from nanostack.models import ModelConfig
from nanostack.run import RunFolder
from nanostack.run.config import FIELDS

NOT_SHAPE = ("vocab_size", "kind", "dropout")  # what the tokenizer gives, the kind (--model), a training choice
MODEL_FIELDS = {"model": "kind"}  # TrainConfig name -> ModelConfig name, where they differ


def shape_fields() -> list:
    """The settings that fix the model's shape: ModelConfig's fields that are also train settings."""
    return ["model"] + [f.name for f in fields(ModelConfig) if f.name not in NOT_SHAPE and f.name in FIELDS]


def base_run(cfg) -> RunFolder:
    run = RunFolder(cfg.init)
    if not run.is_run():
        raise UserError(f"--init {cfg.init} is not a run folder (no config.json)",
                        "give a folder written by `nanostack train` or `nanostack import`")
    if run.checkpoint("best") is None and run.checkpoint("latest") is None:
        raise UserError(f"--init {cfg.init} has no checkpoint yet", "train it first, or give another run")
    return run


def settle_init(cfg, overrides: dict, out):
    """(cfg with the base run's model shape, the base run's tokenizer, extended for chat data)."""
    base = base_run(cfg)
    if base.path.resolve() == Path(out).resolve():
        raise UserError(f"--init {cfg.init} is the --out folder itself", "write the fine-tuned run to another --out")
    shape = base.model_config()
    if "tokenizer" in overrides:
        raise UserError("--tokenizer cannot be given with --init: the tokenizer comes from the base run",
                        "drop --tokenizer")
    settled = {"init": str(base.path.resolve())}
    for name in shape_fields():
        value = getattr(shape, MODEL_FIELDS.get(name, name))
        if name in overrides and overrides[name] != value and str(overrides[name]) != str(value):
            raise UserError(f"--{name.replace('_', '-')} {overrides[name]} differs from the --init run's {value!r}",
                            f"drop --{name.replace('_', '-')}: the model's shape comes from {cfg.init}")
        settled[name] = value
    tokenizer = base.tokenizer()
    if tokenizer.vocab_size != shape.vocab_size:
        raise UserError(f"--init {cfg.init} cannot be extended: its tokenizer has {tokenizer.vocab_size} tokens but "
                        f"its model {shape.vocab_size}", "the run folder mixes files from two runs; give another run")
    if cfg.examples == "chat":
        tokenizer.register_special_tokens(CHAT_TOKENS)
    return replace(cfg, **settled), tokenizer


def open_init_dataset(cfg, tokenizer, log=print):
    """The data to fine-tune on, with the base run's (extended) tokenizer."""
    from nanostack.data import open_dataset  # noqa: PLC0415

    try:
        return open_dataset(cfg.data, tokenizer, cfg.examples, cfg.seed, log=log)
    except UserError as e:
        if tokenizer.kind != "char" or "not in the vocabulary" not in e.message:
            raise
        raise UserError(f"--init {cfg.init} cannot be extended to {cfg.data}: {e.message}",
                        "a char-level tokenizer cannot gain characters; fine-tune a run with a BPE tokenizer "
                        "(bpe:N or gpt2), or keep the data to its characters") from None


def load_base_weights(model, cfg, log=print) -> None:
    """The base run's weights in `model`, whose vocabulary may be larger: new rows are the mean of the old."""
    from nanostack.models.engines import load_tensors  # noqa: PLC0415
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    base = base_run(cfg)
    path = base.checkpoint_for_reading("best") / "model.safetensors"
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({e})", "restore it, or give another run") from None
    old_vocab, new_vocab = base.model_config().vocab_size, model.config.vocab_size
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    extended = {}
    for key, tensor in tensors.items():
        want = expected.get(key)
        extended[key] = tensor if want is None or tuple(tensor.shape) == want else \
            grow_vocab(tensor, want, old_vocab, new_vocab, key, cfg.init)
    load_tensors(model, extended, path)
    if new_vocab > old_vocab:
        log(f"started from {cfg.init} ({path.parent.name}/); {new_vocab - old_vocab} new token(s) start as the mean "
            "of its token rows")
    else:
        log(f"started from {cfg.init} ({path.parent.name}/)")


def grow_vocab(tensor, want: tuple, old_vocab: int, new_vocab: int, key: str, where: str):
    """tensor with each dimension that is old_vocab long grown to new_vocab; new entries are the mean
    of the old ones along that dimension."""
    if len(want) != tensor.dim() or any(have != need and not (have == old_vocab and need == new_vocab)
                                        for have, need in zip(tensor.shape, want)):
        raise UserError(f"--init {where} cannot be extended: its weight {key} has shape {tuple(tensor.shape)}, "
                        f"the new model needs {want}", "give a run of a model that nanostack can fine-tune")
    out = tensor.float()
    for dim, (have, need) in enumerate(zip(tensor.shape, want)):
        if have != need:
            mean = out.mean(dim=dim, keepdim=True)
            sizes = list(out.shape)
            sizes[dim] = need - have
            out = torch.cat([out, mean.expand(*sizes)], dim=dim)
    return out.to(tensor.dtype).contiguous()
