"""nanoGPT checkpoints in: the `ckpt.pt` its train.py writes, as a run folder.

The file is a dict {model, optimizer, model_args, iter_num, best_val_loss, config}, read with
torch.load(weights_only=True) (plain tensors, numbers and strings; nothing that runs code). Its
model is nanostack's GPT: the same tensor names (a compiled model's `_orig_mod.` prefix dropped),
Linear weights, the exact GELU, LayerNorm eps 1e-5, biases as model_args["bias"] says. Its vocabulary
is GPT-2's padded to 50304 (the tokenizer is then GPT-2's, and the padding rows are cut off), or a
character set listed in the meta.pkl of its data folder: `--tokenizer meta.pkl` reads that with an
unpickler that refuses every class and function, so only plain dicts, strings and numbers load.
"""
import pickle
from pathlib import Path

import torch

from nanostack.errors import UserError
from nanostack.interop.imported import fit_vocabulary, import_tokenizer, write_imported_run
from nanostack.models import ModelConfig
from nanostack.tokenizer.char import CharTokenizer

PREFIX = "_orig_mod."  # torch.compile's wrapper, in checkpoints of compiled models


def import_nanogpt(checkpoint, out, tokenizer=None, log=print):
    """nanoGPT's checkpoint file as a run folder at `out`."""
    checkpoint = Path(checkpoint)
    saved = read_checkpoint(checkpoint)
    args = saved["model_args"]
    try:
        config = ModelConfig(vocab_size=int(args["vocab_size"]), block_size=int(args["block_size"]),
                             kind="transformer", n_layer=int(args["n_layer"]), n_head=int(args["n_head"]),
                             n_embd=int(args["n_embd"]), dropout=0.0, bias=bool(args.get("bias", True)),
                             activation="gelu")
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{checkpoint}: model_args lacks a usable {e}", "it is not a nanoGPT checkpoint") from None
    tensors = {k.removeprefix(PREFIX): v for k, v in saved["model"].items()}
    tensors = {k: v for k, v in tensors.items() if not k.endswith(".attn.bias")}  # causal masks of torch < 2
    if tokenizer is not None and str(tokenizer).endswith(".pkl"):
        tok, spec = meta_tokenizer(Path(tokenizer)), "char"
    else:
        tok, spec = import_tokenizer(tokenizer, config.vocab_size, str(checkpoint))
    tensors, config = fit_vocabulary(tensors, config, tok.vocab_size, log)
    origin = {"from": f"the nanoGPT checkpoint {checkpoint.resolve()} (iteration {saved.get('iter_num')})",
              "format": "nanogpt", "path": str(checkpoint.resolve())}
    return write_imported_run(out, config, tensors, tok, spec, origin, log)


def read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"nanoGPT checkpoint {path} does not exist", "give the ckpt.pt of a nanoGPT out_dir")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        raise UserError(f"{path} is not a checkpoint torch can read safely ({type(e).__name__})",
                        "give the ckpt.pt that nanoGPT's train.py wrote") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict) or \
            not isinstance(saved.get("model_args"), dict):
        raise UserError(f"{path} is not a nanoGPT checkpoint (no model and model_args)",
                        "give the ckpt.pt that nanoGPT's train.py wrote")
    return saved


class PlainUnpickler(pickle.Unpickler):
    """Loads only what pickle builds without naming a class or function: dicts, lists, strings, numbers."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it names {module}.{name}")


def meta_tokenizer(path: Path) -> CharTokenizer:
    """The character tokenizer of a nanoGPT data folder's meta.pkl ({vocab_size, itos, stoi})."""
    try:
        with open(path, "rb") as f:
            meta = PlainUnpickler(f).load()
        itos = meta["itos"]
        values = [itos[i] for i in range(len(itos))]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path} is not a nanoGPT meta.pkl of plain values ({e})",
                        "give the meta.pkl that nanoGPT's prepare.py wrote") from None
    if any(not isinstance(v, str) or len(v) != 1 for v in values) or values != sorted(set(values)):
        raise UserError(f"{path}: the characters are not one each, in code-point order",
                        "give the meta.pkl of a character-level nanoGPT dataset")
    return CharTokenizer("".join(values))
