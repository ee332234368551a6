"""Character-level tokenizer: one token per Unicode code point, vocabulary taken from the data.

Encoding and decoding go through numpy, so preparing tens of megabytes of text takes a second.
Special tokens (for chat, or the end of a paragraph) take ids after the characters.
"""
from functools import cached_property

from nanostack.errors import UserError
from nanostack.tokenizer.base import Tokenizer, read_special_tokens


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, chars: str, special_tokens=None):
        self.chars = chars  # sorted, unique; token id = position in this string
        self.stoi = {c: i for i, c in enumerate(chars)}
        super().__init__(special_tokens)

    @cached_property
    def _codepoints(self):
        import numpy as np  # noqa: PLC0415  (numpy is loaded when text is encoded, not when a CLI starts)

        return np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32)

    @classmethod
    def from_text(cls, text: str, special_tokens=()) -> "CharTokenizer":
        tok = cls("".join(sorted(set(text))))
        tok.register_special_tokens(special_tokens)
        return tok

    @property
    def ordinary_vocab_size(self) -> int:
        return len(self.chars)

    def encode_array(self, text: str):
        import numpy as np  # noqa: PLC0415

        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if not len(self._codepoints):
            ids = np.zeros(len(codepoints), dtype=np.int64)
            unknown = np.ones(len(codepoints), dtype=bool)
        else:
            ids = np.minimum(np.searchsorted(self._codepoints, codepoints), len(self._codepoints) - 1)
            unknown = self._codepoints[ids] != codepoints
        if unknown.any():
            missing = sorted({chr(c) for c in codepoints[unknown]})
            shown = ", ".join(repr(c) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise UserError(f"text has {len(missing)} character(s) not in the vocabulary: {shown}",
                            "use only characters that occur in the training data")
        return ids.astype(np.int64)

    def encode_ordinary(self, text: str) -> list:
        return self.encode_array(text).tolist()

    def _decode_ordinary_bytes(self, ids) -> bytes:
        return "".join(self.chars[i] for i in ids).encode("utf-8")

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "version": 1, "chars": self.chars}
        if self.special_tokens:  # omitted when empty: older runs' files stay byte-identical
            d["special_tokens"] = self.special_tokens
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "tokenizer file") -> "CharTokenizer":
        if d.get("kind") != cls.kind or not isinstance(d.get("chars"), str):
            raise UserError(f"{source} is not a char tokenizer", "point at the tokenizer.json of a char-level run")
        return cls(d["chars"], read_special_tokens(d, source))
