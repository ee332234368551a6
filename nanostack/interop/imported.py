"""An imported run folder: weights from elsewhere, made into a run that every reader opens.

It holds config.json (the model's shape; "imported" says where the weights came from; no data, so
no data hash), tokenizer.json and best/ (the weights, step 0). It has no latest/: nothing to resume.
What a user does with it: `nanostack sample RUN`, `nanostack eval RUN --data TEXT` (it has no data
of its own), serving it, and fine-tuning it with `nanostack train --init RUN --data TEXT`.
The folder is written under a temporary name and renamed into place whole.
"""
import shutil
from pathlib import Path

import torch

from nanostack.errors import UserError
from nanostack.models import ModelConfig
from nanostack.models.engines import build_model
from nanostack.run import RunFolder, TrainConfig
from nanostack.tokenizer.spec import open_tokenizer

GPT2_VOCABS = (50257, 50304)  # GPT-2's vocabulary, and nanoGPT's padded to a multiple of 64


class NoData:
    """What the run folder records about the data of a run that has none."""

    kind = "stream"
    data_hash = None

    def __init__(self, origin: dict):
        self.origin = origin

    def describe(self) -> dict:
        return {"imported": self.origin}


def import_tokenizer(spec, vocab_size: int, source: str):
    """The tokenizer an imported model's ids mean: `spec` (gpt2, a tokenizer .json or a run folder), or
    GPT-2's when the vocabulary is GPT-2's and no spec is given."""
    if spec is None:
        if vocab_size not in GPT2_VOCABS:
            raise UserError(f"{source} has a vocabulary of {vocab_size} tokens, not GPT-2's, so its tokenizer "
                            "is unknown", "name it with --tokenizer (a tokenizer .json file or a run folder)")
        spec = "gpt2"
    tokenizer = open_tokenizer(str(spec))
    if tokenizer.vocab_size > vocab_size:
        raise UserError(f"the tokenizer {spec} has {tokenizer.vocab_size} tokens, more than the model's {vocab_size}",
                        "give the tokenizer the model was trained with")
    return tokenizer, str(spec)


def fit_vocabulary(tensors: dict, config: ModelConfig, vocab_size: int, log) -> tuple:
    """(tensors, config) with the embedding cut to the tokenizer's vocab_size: rows past it are padding
    (nanoGPT pads GPT-2's 50257 to 50304) that no token id reaches."""
    if vocab_size == config.vocab_size:
        return tensors, config
    log(f"note: the model's vocabulary of {config.vocab_size} is cut to the tokenizer's {vocab_size} "
        f"(the {config.vocab_size - vocab_size} rows past it are padding no token reaches)")
    cut = dict(tensors)
    for name in ("transformer.wte.weight", "lm_head.weight"):
        if name in cut:
            cut[name] = cut[name][:vocab_size]
    return cut, ModelConfig(**{**vars(config), "vocab_size": vocab_size})


def write_imported_run(out, config: ModelConfig, tensors: dict, tokenizer, tokenizer_spec: str, origin: dict,
                       log=print) -> RunFolder:
    """A run folder at `out` holding these weights (checked against the model first), in their own
    floating-point type (a float64 or bf16 checkpoint stays one; readers load it in theirs)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not empty", "choose another --out")
    problem = config.problem()
    if problem:
        raise UserError(f"the imported model is impossible: {problem}", "check the source checkpoint")
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    model = build_model("torch", config, seed=0).to(dtypes.pop() if len(dtypes) == 1 else torch.float32)
    expected = model.state_dict()
    for name, tensor in tensors.items():
        if name not in expected or tuple(tensor.shape) != tuple(expected[name].shape):
            found = tuple(expected[name].shape) if name in expected else "no such weight"
            raise UserError(f"weight {name} of shape {tuple(tensor.shape)} does not fit the model ({found})",
                            "the checkpoint and its config disagree")
    missing, _ = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and "transformer.wte.weight" in tensors)]  # tied
    if missing:
        raise UserError(f"the checkpoint lacks weights {missing[:3]}", "it is not a complete GPT-2 checkpoint")
    tmp = out.with_name(out.name + ".importing")
    shutil.rmtree(tmp, ignore_errors=True)
    run = RunFolder(tmp)
    own = "gpt2" if tokenizer_spec == "gpt2" else str(out.resolve() / "tokenizer.json")
    cfg = TrainConfig(data="", tokenizer=own, model="transformer", n_layer=config.n_layer, n_head=config.n_head,
                      n_embd=config.n_embd, block_size=config.block_size, bias=config.bias, dropout=0.0,
                      activation=config.activation)
    try:
        with run.lock():
            run.write_tokenizer(tokenizer)
            run.write_config(cfg, config, NoData(origin))
            run.save_checkpoint("best", model, {"step": 0, "val_loss": None, "imported": origin})
        (tmp / "run.lock").unlink(missing_ok=True)
        if out.exists():
            out.rmdir()  # empty: checked above
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"imported {origin['from']} into {out}: {model.num_params() / 1e6:.2f}M parameters, vocab "
        f"{config.vocab_size}, block {config.block_size}, {config.n_layer} layers")
    return RunFolder(out)
