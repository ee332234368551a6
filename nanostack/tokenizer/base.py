"""Tokenizer: the one interface every tokenizer of nanostack satisfies (char.py, bpe.py).

A subclass says how ordinary text becomes ids (`encode_ordinary`), how ids become bytes
(`decode_bytes`), how many ordinary ids it has, and how it is stored (`to_dict` / `from_dict`).
Everything else is shared and written once here: special tokens (registered by name, with ids
after the ordinary ones), the `allowed_special` rules of `encode` (as tiktoken's), text decoding,
the vocabulary size a model's embedding needs, and saving to / loading from one JSON file.

Special-token text in data is refused by default ("none_raise"): a document that happens to hold
"<|endoftext|>" must not silently become a control token. "none" encodes it as plain text, "all"
or a set of names encodes those as their special ids.
"""
import json

import regex

from nanostack.errors import UserError
from nanostack.io import read_json, write_atomic

SPECIAL_MODES = ("none_raise", "none", "all")


class Tokenizer:
    kind = ""  # the "kind" field of the saved JSON, which load_tokenizer dispatches on

    def __init__(self, special_tokens=None):
        self.special_tokens = {}  # name -> id
        self._set_special_tokens(dict(special_tokens or {}))

    # ---- what a subclass provides ------------------------------------------------------------
    @property
    def ordinary_vocab_size(self) -> int:
        """Ids 0 .. ordinary_vocab_size - 1 are ordinary tokens; special ids follow."""
        raise NotImplementedError

    def encode_ordinary(self, text: str) -> list:
        """Ids of text, special-token text included as plain text."""
        raise NotImplementedError

    def _decode_ordinary_bytes(self, ids) -> bytes:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict, source: str = "tokenizer file") -> "Tokenizer":
        raise NotImplementedError

    # ---- shared --------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """One more than the largest id: the size of a model's embedding table for these tokens."""
        return max([self.ordinary_vocab_size - 1, *self.special_tokens.values()]) + 1

    def register_special_tokens(self, names) -> list:
        """Add the special tokens in `names` that are missing, with ids after every existing id;
        return the ids of all of `names`, in order."""
        for name in names:
            if name not in self.special_tokens:
                self._set_special_tokens({**self.special_tokens, name: self.vocab_size})
        return [self.special_tokens[name] for name in names]

    def _set_special_tokens(self, specials: dict) -> None:
        for name, i in specials.items():
            if not isinstance(name, str) or not name:
                raise UserError(f"special token {name!r} is not a non-empty string", "name it like <|endoftext|>")
            if not isinstance(i, int) or isinstance(i, bool) or i < self.ordinary_vocab_size:
                raise UserError(f"special token {name!r} has id {i}, which an ordinary token already uses",
                                f"give special tokens ids from {self.ordinary_vocab_size} up")
        if len(set(specials.values())) != len(specials):
            raise UserError("two special tokens share an id", "give each special token its own id")
        self.special_tokens = specials
        self._id_to_special = {i: s.encode("utf-8") for s, i in specials.items()}
        longest_first = sorted(specials, key=len, reverse=True)
        self._special_re = regex.compile("|".join(map(regex.escape, longest_first))) if specials else None

    def special_id(self, name: str) -> int:
        if name not in self.special_tokens:
            raise UserError(f"this tokenizer has no special token {name!r}",
                            f"it has {sorted(self.special_tokens) or 'none'}")
        return self.special_tokens[name]

    def encode(self, text: str, allowed_special="none_raise") -> list:
        """Token ids of text. allowed_special: "none_raise" (refuse special-token text), "none"
        (treat it as ordinary text), "all", or a set of the special tokens to recognise."""
        allowed = self._allowed(allowed_special)
        if allowed is None or self._special_re is None:
            return self.encode_ordinary(text)
        ids, start = [], 0
        for match in self._special_re.finditer(text):
            name = match.group()
            if name not in allowed:
                raise UserError(f"text contains the special token {name!r}, which is not allowed here",
                                "allow it to encode it as one token (allowed_special='all' or a set naming it; "
                                "--allowed-special all), or encode it as plain text ('none')")
            ids.extend(self.encode_ordinary(text[start:match.start()]))
            ids.append(self.special_tokens[name])
            start = match.end()
        ids.extend(self.encode_ordinary(text[start:]))
        return ids

    def _allowed(self, allowed_special):
        """The set of special tokens to encode as such (all are checked), or None: no special handling."""
        if isinstance(allowed_special, str):
            if allowed_special == "none":
                return None
            if allowed_special == "all":
                return set(self.special_tokens)
            if allowed_special == "none_raise":
                return set()
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            unknown = set(allowed_special) - set(self.special_tokens)
            if unknown:
                raise UserError(f"unknown special token(s) {sorted(unknown)}",
                                f"this tokenizer has {sorted(self.special_tokens) or 'none'}")
            return set(allowed_special)
        raise UserError(f"allowed_special must be one of {SPECIAL_MODES} or a set, not {allowed_special!r}",
                        "use 'none_raise' (default), 'none', 'all' or a set of special tokens")

    def encode_array(self, text: str):
        """encode_ordinary as an int64 numpy array (what token shards store)."""
        import numpy as np  # noqa: PLC0415  (not loaded by a CLI that only parses arguments)

        return np.asarray(self.encode_ordinary(text), dtype=np.int64)

    def decode_bytes(self, ids) -> bytes:
        """The bytes of ids; a special id gives its name's text."""
        ids = [int(i) for i in ids]
        n = self.ordinary_vocab_size
        if all(0 <= i < n for i in ids):
            return self._decode_ordinary_bytes(ids)
        parts, run = [], []
        for i in ids:
            if 0 <= i < n:
                run.append(i)
                continue
            if i not in self._id_to_special:
                raise UserError(f"token id {i} is not in this tokenizer's vocabulary of {self.vocab_size}",
                                "decode ids made by the same tokenizer")
            parts += [self._decode_ordinary_bytes(run), self._id_to_special[i]]
            run = []
        return b"".join([*parts, self._decode_ordinary_bytes(run)])

    def decode(self, ids, errors="replace") -> str:
        """Text of ids; byte sequences that are not UTF-8 become U+FFFD (errors="strict" raises)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def save(self, path) -> None:
        write_atomic(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path) -> "Tokenizer":
        return cls.from_dict(read_json(path, "tokenizer file"), f"tokenizer file {path}")


def read_special_tokens(d: dict, source: str) -> dict:
    """The {name: id} of a saved tokenizer, checked."""
    specials = d.get("special_tokens", {})
    if not isinstance(specials, dict):
        raise UserError(f"{source}: special_tokens is not an object", "restore the file or train it again")
    try:
        return {str(k): int(v) for k, v in specials.items()}
    except (TypeError, ValueError):
        raise UserError(f"{source}: a special token id is not a number", "restore the file or train it again") from None
