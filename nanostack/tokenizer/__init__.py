"""Tokenizers: text <-> token ids. `char` is the character-level one; a run stores its tokenizer as JSON."""
from nanostack.io import read_json
from nanostack.tokenizer.char import CharTokenizer
from nanostack.errors import UserError

TOKENIZERS = {"char": CharTokenizer}


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


__all__ = ["CharTokenizer", "load_tokenizer", "tokenizer_from_text"]
