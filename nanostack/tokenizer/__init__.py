"""Tokenizers: text <-> token ids. `char` is character-level, `bpe` byte-level BPE (bpe.py);
a run stores its tokenizer as JSON.

A tokenizer spec names one: "char" (the characters of the data), "bpe:4096" (BPE trained on the
training split to that vocabulary), "gpt2" (GPT-2's BPE, from its ranks file), or a tokenizer .json
file (a run's tokenizer.json, or one saved by `nanostack tokenizer train`).
"""
import hashlib
from pathlib import Path

from nanostack.errors import UserError
from nanostack.io import read_json
from nanostack.tokenizer.bpe import BPETokenizer
from nanostack.tokenizer.char import CharTokenizer

TOKENIZERS = {"char": CharTokenizer, "bpe": BPETokenizer}
SPEC_HELP = "char, bpe:VOCAB_SIZE (trained on the train split), gpt2, or a tokenizer .json file"


def load_tokenizer(path):
    d = read_json(path, "tokenizer file")
    kind = d.get("kind")
    if kind not in TOKENIZERS:
        raise UserError(f"tokenizer file {path} has unknown kind {kind!r}", f"expected one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[kind].from_dict(d)


def parse_spec(spec: str):
    """(kind, argument) of a tokenizer spec, checked before any data is read."""
    if spec in ("char", "gpt2"):
        return spec, None
    if spec.startswith("bpe:"):
        size = spec[4:]
        if not size.isdigit() or int(size) < 256:
            raise UserError(f"tokenizer {spec!r} needs a vocabulary size of at least 256",
                            "write it as bpe:4096 (256 byte tokens + 3840 merges)")
        return "bpe", int(size)
    path = Path(spec).expanduser()
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise UserError(f"tokenizer file {spec} does not exist", f"give {SPEC_HELP}")
        return "file", path
    raise UserError(f"unknown tokenizer {spec!r}", f"use {SPEC_HELP}")


def spec_cache_key(spec: str) -> str:
    """What identifies the tokenizer for caching shards: the spec, and a file's content."""
    kind, arg = parse_spec(spec)
    return f"file:{hashlib.sha256(arg.read_bytes()).hexdigest()}" if kind == "file" else spec


def build_tokenizer(spec: str, train_text: str = "", val_text: str = "", progress=None):
    """The tokenizer named by spec; char and bpe:N are made from the data (BPE from train_text only)."""
    kind, arg = parse_spec(spec)
    if kind == "char":
        return CharTokenizer.from_text(train_text + val_text)
    if kind == "bpe":
        return BPETokenizer.train(train_text, arg, progress=progress)
    if kind == "gpt2":
        return gpt2_tokenizer()
    return load_tokenizer(arg)


def open_tokenizer(spec: str):
    """An existing tokenizer: gpt2, a tokenizer .json file, or a run folder (its tokenizer.json)."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return load_tokenizer(path / "tokenizer.json")
    kind, arg = parse_spec(spec)
    if kind == "gpt2":
        return gpt2_tokenizer()
    if kind == "file":
        return load_tokenizer(arg)
    raise UserError(f"tokenizer {spec!r} is made from data, so there is none to open",
                    "give gpt2, a tokenizer .json file or a run folder (or train one: nanostack tokenizer train)")


def gpt2_tokenizer() -> BPETokenizer:
    from nanostack.data.sources import TOKENIZER_DOWNLOADS, builtin_path  # noqa: PLC0415 (data imports this module)

    return BPETokenizer.from_tiktoken(builtin_path("gpt2", TOKENIZER_DOWNLOADS))


__all__ = ["BPETokenizer", "CharTokenizer", "build_tokenizer", "gpt2_tokenizer", "load_tokenizer", "open_tokenizer",
           "parse_spec", "spec_cache_key"]
