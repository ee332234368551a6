"""Sampling from a trained run: load its tokenizer and weights, stream generated text, or (for
line-per-example runs) generate new examples and say which ones the training data already holds."""
import codecs
import sys
from itertools import chain
from pathlib import Path

import torch

from nanostack.errors import UserError
from nanostack.io import read_json
from nanostack.models import ModelConfig, generate
from nanostack.models.gpt_numpy import TorchFacade
from nanostack.tokenizer import load_tokenizer
from nanostack.train.backends import build_model
from nanostack.train.checkpoint import find_checkpoint, load_weights


def load_run(run_dir, which: str = "best", device: str = "cpu", backend: str = "torch"):
    """(model, tokenizer) of a run; `which` is best or latest (best falls back to latest).

    backend "numpy" loads the weights into nanostack.grad's GPT (CPU only), whichever engine trained them."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.json)", "give the --out folder of `nanostack train`")
    config = read_json(run_dir / "config.json", "run config")
    try:
        model_config = ModelConfig(**config["model"])
        if backend == "numpy" and (model_config.kind not in ("transformer", "mlp") or model_config.batchnorm):
            raise UserError(f"the numpy backend runs the transformer and the mlp (no batchnorm), and {run_dir} "
                            f"holds a {model_config.kind}", "sample it with --backend torch")
        model = build_model(backend, model_config, seed=0, device="cpu")
    except (KeyError, TypeError) as e:
        raise UserError(f"run config {run_dir / 'config.json'} is damaged ({e})", "restore it or retrain") from None
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    if tokenizer.vocab_size != model.config.vocab_size:
        raise UserError(f"tokenizer of {run_dir} has {tokenizer.vocab_size} tokens but the model has "
                        f"{model.config.vocab_size}", "the run folder mixes files from two runs; retrain")
    folder = find_checkpoint(run_dir, which) or find_checkpoint(run_dir, "latest")
    if folder is None:
        raise UserError(f"{run_dir} has no checkpoint yet", "train it for at least --ckpt-interval steps")
    load_weights(model, folder / "model.safetensors")
    if backend == "numpy":
        return TorchFacade(model.eval()), tokenizer
    return model.to(device).eval(), tokenizer


def stream_samples(model, tokenizer, prompt="", max_new_tokens=500, num_samples=1, temperature=1.0, top_k=None,
                   top_p=None, seed=1337, out=None, separator="\n---\n"):
    """Write num_samples continuations of prompt to `out` (stdout), each token as soon as it is produced."""
    out = out or sys.stdout
    check_sampling(temperature, top_k, top_p)
    ids = tokenizer.encode(prompt) if prompt else _start_token(tokenizer)
    device = device_of(model)
    idx = torch.tensor([list(ids)], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    for i in range(num_samples):
        if i:
            out.write(separator)
        out.write(prompt)
        text_of = _stream_decoder(tokenizer)
        for token in generate(model, idx, max_new_tokens, temperature, top_k, top_p, generator):
            out.write(text_of(token[0].tolist()))
            out.flush()
        out.write(text_of([], final=True))
    out.write("\n")
    out.flush()


def check_sampling(temperature, top_k, top_p) -> None:
    if temperature < 0:
        raise UserError(f"temperature must be >= 0, got {temperature}", "use 0 for greedy, 1 for plain sampling")
    if top_k is not None and top_k < 1:
        raise UserError(f"top_k must be at least 1, got {top_k}", "drop --top-k or give a positive number")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"top_p must be in (0, 1], got {top_p}", "use e.g. --top-p 0.9")


def device_of(model):
    """Where a model's weights are: its first parameter's or buffer's device (numpy models: the CPU)."""
    if isinstance(model, torch.nn.Module):
        for tensor in chain(model.parameters(), model.buffers()):
            return tensor.device
    return torch.device("cpu")


def _stream_decoder(tokenizer):
    """text_of(ids) -> the text they complete. A byte-level token can end inside a character (an
    emoji spans several tokens), so bytes wait until their character is whole."""
    if not hasattr(tokenizer, "decode_bytes"):
        return lambda ids, final=False: tokenizer.decode(ids)
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return lambda ids, final=False: utf8.decode(tokenizer.decode_bytes(ids), final=final)


def _start_token(tokenizer):
    """An empty prompt starts from a newline, or from token 0 if the data had no newline."""
    try:
        return tokenizer.encode("\n")[:1]
    except UserError:
        return [0]


def sample_examples(model, tokenizer, num_samples=10, temperature=1.0, top_k=None, top_p=None, seed=1337,
                    train_words=None, out=None) -> list:
    """Generate num_samples new examples of a line-per-example run, one per line, to `out` (stdout).
    Those that occur in train_words are marked "(in train)"; the others are new. Returns the examples."""
    out = out or sys.stdout
    check_sampling(temperature, top_k, top_p)
    boundary = int(tokenizer.encode("\n")[0])
    device = device_of(model)
    idx = torch.full((num_samples, 1), boundary, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    steps = model.config.block_size - 1  # the longest example the model has seen
    new = torch.cat(list(generate(model, idx, steps, temperature, top_k, top_p, generator)), dim=1).tolist()
    known = set(train_words or ())
    examples = []
    for row in new:
        ids = row[:row.index(boundary)] if boundary in row else row
        examples.append(tokenizer.decode(ids))
    for example in examples:
        mark = "  (in train)" if example in known else ""
        out.write(f"{example}{mark}\n")
    if train_words is not None:
        fresh = sum(e not in known for e in examples)
        out.write(f"--- {fresh} of {len(examples)} are new (not in the training data)\n")
    out.flush()
    return examples


def line_examples_of(run_dir):
    """(is a line-per-example run, its training examples or None when its data can no longer be read)."""
    config = read_json(Path(run_dir) / "config.json", "run config")
    if config.get("data_mode") != "lines":
        return False, None
    from nanostack.data import read_examples  # noqa: PLC0415

    train = config.get("train", {})
    try:
        return True, read_examples(train["data"], train["seed"]).train_words
    except (UserError, KeyError):
        return True, None
