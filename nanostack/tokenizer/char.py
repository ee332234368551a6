"""Character-level tokenizer: one token per Unicode code point, vocabulary taken from the data.

Encoding and decoding go through numpy, so preparing tens of megabytes of text takes a second.
"""
import json

import numpy as np

from nanostack.errors import UserError
from nanostack.io import write_atomic


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str):
        self.chars = chars  # sorted, unique; token id = position in this string
        self._codepoints = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32)
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codepoints, codepoints)
        ids = np.minimum(ids, len(self._codepoints) - 1)
        unknown = self._codepoints[ids] != codepoints
        if unknown.any():
            missing = sorted({chr(c) for c in codepoints[unknown]})
            shown = ", ".join(repr(c) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise UserError(
                f"text has {len(missing)} character(s) not in the vocabulary: {shown}",
                "use only characters that occur in the training data",
            )
        return ids.astype(np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "version": 1, "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if d.get("kind") != cls.kind or not isinstance(d.get("chars"), str):
            raise UserError("tokenizer file is not a char tokenizer", "point at the tokenizer.json of a char-level run")
        return cls(d["chars"])

    def save(self, path) -> None:
        write_atomic(path, json.dumps(self.to_dict(), ensure_ascii=False))
