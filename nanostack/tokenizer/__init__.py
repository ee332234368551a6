"""Tokenizers: text <-> token ids. `char` is character-level, `bpe` byte-level BPE (bpe.py);
a run stores its tokenizer as JSON."""
from nanostack.errors import UserError
from nanostack.io import read_json
from nanostack.tokenizer.bpe import BPETokenizer
from nanostack.tokenizer.char import CharTokenizer

TOKENIZERS = {"char": CharTokenizer, "bpe": BPETokenizer}


def load_tokenizer(path):
    d = read_json(path, "tokenizer file")
    kind = d.get("kind")
    if kind not in TOKENIZERS:
        raise UserError(f"tokenizer file {path} has unknown kind {kind!r}", f"expected one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[kind].from_dict(d)


def tokenizer_from_text(spec: str, text: str):
    """Build the tokenizer named by `spec` (e.g. "char") from the training text."""
    if spec not in TOKENIZERS:
        raise UserError(f"unknown tokenizer {spec!r}", f"use one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[spec].from_text(text)


__all__ = ["BPETokenizer", "CharTokenizer", "load_tokenizer", "tokenizer_from_text"]
