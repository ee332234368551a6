"""Hugging Face GPT-2 checkpoints, in and out, without transformers.

A `save_pretrained` folder holds config.json (model_type "gpt2") and model.safetensors (or shards
with model.safetensors.index.json, or an older pytorch_model.bin, read with weights_only=True).
GPT-2 is nanostack's GPT with the tanh GELU ("gelu_new"), LayerNorm eps 1e-5, biases everywhere and
a tied head: what a config asks beyond that (attention scaled per layer, upcast attention, cross-
attention, an untied head, another width of MLP) is refused, so an imported model computes what
the original does. Export writes the same layout back; a model the layout cannot hold (an option
GPT-2 does not have) is refused with one line. An exported folder also holds the run's tokenizer
(nanostack_tokenizer.json), which an import of it picks up.
"""
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nanostack.errors import UserError
from nanostack.interop.imported import fit_vocabulary, import_tokenizer, write_imported_run
from nanostack.interop.layout import HEAD, gpt2_to_nanostack, nanostack_to_gpt2, with_bias_zeros
from nanostack.io import read_json, write_json
from nanostack.models import ModelConfig
from nanostack.run import open_run

ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}  # HF name -> ours
EXPORTED_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
TOKENIZER_FILE = "nanostack_tokenizer.json"
# GPT-2 options that change what the model computes, and the value nanostack's GPT matches
MUST_BE = {"scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False, "add_cross_attention": False,
           "scale_attn_weights": True, "tie_word_embeddings": True, "layer_norm_epsilon": 1e-5}
# modern options of nanostack's GPT (read with defaults: absent on older configs) GPT-2 cannot hold
NOT_IN_GPT2 = {"rotary": False, "rmsnorm": False, "qk_norm": False, "untied_head": False}


# ---- import ------------------------------------------------------------------------------------------
def import_hf(folder, out, tokenizer=None, log=print):
    """The GPT-2 checkpoint folder `folder` as a run folder at `out`."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} holds no config.json", "give a folder written by save_pretrained")
    config = model_config_of(read_json(folder / "config.json", "Hugging Face config"), folder)
    tensors = read_weights(folder)
    masks = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older transformers versions
    tensors = gpt2_to_nanostack({k: v for k, v in tensors.items() if not k.endswith(masks)})
    head, wte = tensors.pop(HEAD, None), tensors.get("transformer.wte.weight")
    if head is not None and wte is not None and not torch.equal(head, wte):
        raise UserError(f"{folder} has a language-model head of its own (not tied to the token embedding)",
                        "nanostack's GPT ties them; this checkpoint cannot be imported")
    if tokenizer is None and (folder / TOKENIZER_FILE).is_file():
        tokenizer = folder / TOKENIZER_FILE  # exported by nanostack: its own tokenizer came along
    tok, spec = import_tokenizer(tokenizer, config.vocab_size, str(folder))
    tensors, config = fit_vocabulary(tensors, config, tok.vocab_size, log)
    origin = {"from": f"the Hugging Face GPT-2 checkpoint {folder.resolve()}", "format": "hf",
              "path": str(folder.resolve())}
    return write_imported_run(out, config, tensors, tok, spec, origin, log)


def model_config_of(hf: dict, folder) -> ModelConfig:
    """nanostack's ModelConfig for a GPT-2 config.json; anything else is refused."""
    kind, architectures = hf.get("model_type"), hf.get("architectures") or ["GPT2LMHeadModel"]
    if kind != "gpt2" or not set(architectures) <= set(ARCHITECTURES):
        raise UserError(f"{folder} holds a {kind or 'unknown'} model ({', '.join(map(str, architectures))}), not "
                        "GPT-2", "nanostack imports GPT2LMHeadModel checkpoints (model_type gpt2)")
    for name, value in MUST_BE.items():
        if hf.get(name, value) != value:
            raise UserError(f"{folder}: {name} is {hf[name]!r}; nanostack's GPT computes GPT-2 with {value!r}",
                            "this checkpoint cannot be imported exactly")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise UserError(f"{folder}: activation_function {activation!r} is not one nanostack's GPT has",
                        f"it imports {', '.join(ACTIVATIONS)}")
    try:
        n_embd = int(hf["n_embd"])
        if hf.get("n_inner") not in (None, 4 * n_embd):
            raise UserError(f"{folder}: n_inner is {hf['n_inner']}, and nanostack's MLP is 4 x n_embd = {4 * n_embd}",
                            "this checkpoint cannot be imported")
        return ModelConfig(vocab_size=int(hf["vocab_size"]), block_size=int(hf["n_positions"]), kind="transformer",
                           n_layer=int(hf["n_layer"]), n_head=int(hf["n_head"]), n_embd=n_embd, dropout=0.0,
                           bias=True, activation=ACTIVATIONS[activation])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{folder}/config.json lacks a usable {e}", "it is not a GPT-2 config") from None


def read_weights(folder: Path) -> dict:
    """Every tensor of a checkpoint folder: model.safetensors, its shards, or pytorch_model.bin."""
    single, index, legacy = folder / "model.safetensors", folder / "model.safetensors.index.json", \
        folder / "pytorch_model.bin"
    try:
        if single.is_file():
            return load_file(str(single))
        if index.is_file():
            tensors = {}
            for name in sorted(set(read_json(index, "safetensors index").get("weight_map", {}).values())):
                tensors.update(load_file(str(folder / name)))
            return tensors
        if legacy.is_file():
            return torch.load(legacy, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise UserError(f"the weights in {folder} are unreadable ({type(e).__name__}: {str(e)[:200]})",
                        "check the download") from None
    raise UserError(f"{folder} holds no model.safetensors (nor shards, nor pytorch_model.bin)",
                    "give a folder written by save_pretrained")


# ---- export ------------------------------------------------------------------------------------------
def export_hf(run_dir, out, which="best", log=print) -> Path:
    """Write the run's checkpoint `which` as a GPT-2 folder that GPT2LMHeadModel.from_pretrained loads."""
    run = open_run(run_dir)
    config = run.model_config()
    refuse_unrepresentable(config)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not empty", "choose another --out")
    tensors = load_file(str(run.checkpoint_for_reading(which) / "model.safetensors"))
    if "transformer.wte.weight" not in tensors:  # a tied weight is stored once, under either name
        tensors["transformer.wte.weight"] = tensors[HEAD]
    dtype = tensors["transformer.wte.weight"].dtype
    if not config.bias:  # GPT-2's layers always have biases: a bias-free model's are zeros
        tensors = with_bias_zeros(tensors, config.n_layer, config.n_embd, dtype)
    tokenizer = run.tokenizer()
    end = tokenizer.special_tokens.get("<|endoftext|>")
    tmp = out.with_name(out.name + ".exporting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file(nanostack_to_gpt2(tensors), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        write_json(tmp / "config.json", hf_config(config, end, str(dtype).removeprefix("torch.")))
        tokenizer.save(tmp / TOKENIZER_FILE)
        if out.exists():
            out.rmdir()  # empty: checked above
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"exported {run.path} ({which}) to {out}: load it with GPT2LMHeadModel.from_pretrained({str(out)!r})")
    return out


def refuse_unrepresentable(config: ModelConfig) -> None:
    if config.kind != "transformer":
        raise UserError(f"a {config.kind} model cannot be exported as GPT-2", "export a transformer run")
    for name, off in NOT_IN_GPT2.items():
        if getattr(config, name, off) != off:
            raise UserError(f"GPT-2's layout has no {name.replace('_', ' ')}, and this model uses it",
                            "export a run trained without it")
    activation = getattr(config, "activation", "gelu")
    if activation not in EXPORTED_ACTIVATIONS:
        raise UserError(f"GPT-2's layout has no {activation} activation", "export a run with gelu or gelu_tanh")


def hf_config(config: ModelConfig, end_token, dtype: str) -> dict:
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": config.vocab_size,
            "n_positions": config.block_size, "n_embd": config.n_embd, "n_layer": config.n_layer,
            "n_head": config.n_head, "n_inner": None,
            "activation_function": EXPORTED_ACTIVATIONS[getattr(config, "activation", "gelu")],
            "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
            "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False, "use_cache": True,
            "tie_word_embeddings": True, "bos_token_id": end_token, "eos_token_id": end_token, "dtype": dtype}


__all__ = ["export_hf", "import_hf"]
