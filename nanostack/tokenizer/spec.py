"""TokenizerSpec: a `--tokenizer` setting, parsed once into a value.

A spec names a tokenizer: "char" (the characters of the data), "bpe:4096" (byte-level BPE trained
on the training split to that vocabulary), "gpt2" (GPT-2's BPE, from its ranks file), or a tokenizer
.json file (a run's tokenizer.json, or one saved by `nanostack tokenizer train`). The first two are
made from data; the others exist already and can be opened.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

from nanostack.errors import UserError
from nanostack.io import fetch_once, read_json
from nanostack.tokenizer.bpe import BPETokenizer
from nanostack.tokenizer.char import CharTokenizer

TOKENIZERS = {"char": CharTokenizer, "bpe": BPETokenizer}
SPEC_HELP = "char, bpe:VOCAB_SIZE (trained on the train split), gpt2, or a tokenizer .json file"
# GPT-2's BPE ranks: tiktoken's r50k_base file, which is GPT-2's
GPT2_RANKS = ("gpt2.tiktoken", "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken")


@dataclass(frozen=True)
class TokenizerSpec:
    text: str                       # as written by the user
    kind: str                       # char | bpe | gpt2 | file
    vocab_size: int | None = None   # bpe only
    path: Path | None = None        # file only

    @classmethod
    def parse(cls, spec) -> "TokenizerSpec":
        """The spec of a string (or a spec, returned as is); checked before any data is read."""
        if isinstance(spec, TokenizerSpec):
            return spec
        if not isinstance(spec, str) or not spec:
            raise UserError(f"tokenizer {spec!r} is not a tokenizer spec", f"use {SPEC_HELP}")
        if spec in ("char", "gpt2"):
            return cls(spec, spec)
        if spec.startswith("bpe:"):
            size = spec[4:]
            if not size.isdigit() or int(size) < 256:
                raise UserError(f"tokenizer {spec!r} needs a vocabulary size of at least 256",
                                "write it as bpe:4096 (256 byte tokens + 3840 merges)")
            return cls(spec, "bpe", vocab_size=int(size))
        path = Path(spec).expanduser()
        if path.suffix == ".json" or path.is_file():
            if not path.is_file():
                raise UserError(f"tokenizer file {spec} does not exist", f"give {SPEC_HELP}")
            return cls(spec, "file", path=path.resolve())
        raise UserError(f"unknown tokenizer {spec!r}", f"use {SPEC_HELP}")

    @property
    def made_from_data(self) -> bool:
        return self.kind in ("char", "bpe")

    def cache_key(self) -> str:
        """What identifies the tokenizer for caching shards: the spec, or a file's content."""
        if self.kind == "file":
            return f"file:{hashlib.sha256(self.path.read_bytes()).hexdigest()}"
        return self.text

    def build(self, train_text: str = "", val_text: str = "", special_tokens=(), progress=None):
        """The tokenizer; char and bpe:N are made from the data (BPE from train_text only), with
        special_tokens registered (for bpe:N, within the vocabulary size)."""
        if self.kind == "char":
            return CharTokenizer.from_text(train_text + val_text, special_tokens)
        if self.kind == "bpe":
            return BPETokenizer.train(train_text, self.vocab_size, special_tokens=list(special_tokens),
                                      progress=progress)
        tok = self.open()
        tok.register_special_tokens(special_tokens)
        return tok

    def open(self):
        """An existing tokenizer (gpt2 or a file); char and bpe:N have none until made from data."""
        if self.kind == "gpt2":
            return gpt2_tokenizer()
        if self.kind == "file":
            return load_tokenizer(self.path)
        raise UserError(f"tokenizer {self.text!r} is made from data, so there is none to open",
                        "give gpt2, a tokenizer .json file or a run folder (or train one: nanostack tokenizer train)")


def load_tokenizer(path):
    """The tokenizer saved in a JSON file (char or BPE: its "kind" says which)."""
    d = read_json(path, "tokenizer file")
    kind = d.get("kind")
    if kind not in TOKENIZERS:
        raise UserError(f"tokenizer file {path} has unknown kind {kind!r}", f"expected one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[kind].from_dict(d, f"tokenizer file {path}")


def open_tokenizer(spec: str):
    """An existing tokenizer: gpt2, a tokenizer .json file, or a run folder (its tokenizer.json)."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return load_tokenizer(path / "tokenizer.json")
    return TokenizerSpec.parse(spec).open()


def gpt2_tokenizer() -> BPETokenizer:
    return BPETokenizer.from_tiktoken(fetch_once("gpt2", *GPT2_RANKS))
