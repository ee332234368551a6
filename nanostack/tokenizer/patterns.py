"""Pre-splitting patterns: BPE never merges across the boundaries these regexes draw.

Text is cut into chunks (words with their leading space, runs of digits, punctuation, runs of
whitespace) and each chunk is tokenized on its own, so that " dog", " dog." and " dog!" share
the token " dog". The patterns need the `regex` module (possessive quantifiers and \\p{...}).
"""
import re
from functools import lru_cache

import regex

from nanostack.errors import UserError

# GPT-2's pattern (tiktoken's r50k_base / gpt2)
GPT2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
# GPT-4's pattern (cl100k_base), with digits in runs of at most three, as nanochat and rustbpe use it
GPT4 = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
NAMED = {"gpt2": GPT2, "gpt4": GPT4}


NO_SPLIT = ("none", "", None)  # every way to say "do not split": the whole text is one chunk


def resolve_pattern(pattern) -> str:
    """A named pattern (gpt2, gpt4), a regex of your own, or "none" / "" / None for no splitting at all
    (stored as "")."""
    if pattern in NO_SPLIT:
        return ""
    if not isinstance(pattern, str):
        raise UserError(f"split pattern {pattern!r} is not a string", "use gpt2, gpt4, none or a regex")
    text = NAMED.get(pattern, pattern)
    try:
        regex.compile(text)
    except regex.error as e:
        raise UserError(f"split pattern {pattern!r} is not a valid regex ({e})",
                        "use gpt2, gpt4, none or a valid regex") from None
    return text


def compile_pattern(text: str):
    """The compiled split pattern (anything with .findall), or None for no splitting."""
    if not text:
        return None
    if text in NAMED.values():
        return FastSplitter(text)
    return CoveringSplitter(regex.compile(text))


class CoveringSplitter:
    """A user's regex, made to cover every character: the text between two matches (which the regex
    does not describe) becomes a chunk of its own, and empty matches are dropped. So no text is ever
    lost, whatever the pattern: decode(encode(s)) == s. The built-in patterns cover all text already."""

    def __init__(self, compiled):
        self.compiled = compiled

    def findall(self, text: str) -> list:
        chunks, end = [], 0
        for match in self.compiled.finditer(text):
            start, stop = match.span()
            if start > end:
                chunks.append(text[end:start])
            if stop > start:
                chunks.append(text[start:stop])
                end = stop
            else:
                end = max(end, start)
        if end < len(text):
            chunks.append(text[end:])
        return chunks


class FastSplitter:
    r"""A built-in pattern on Python's `re`, which splits 2-3x faster than `regex`, for any text
    without characters above U+FFFF; `regex` for the rest.

    `re` knows no \p{L}, and its \s also matches U+001C..U+001F, so \p{L}, \p{N}, \s and \S are
    spelled out as classes read from `regex`'s own Unicode tables. Only their 16-bit part is used:
    `re` tests such a class with a bitmap, but a class holding a character above U+FFFF becomes a
    slow list of ranges. Text with such characters (emoji, rare CJK) goes to `regex` instead, so
    every text is cut exactly as `regex` (and tiktoken) cut it."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.fast = re.compile(as_16bit_re(pattern))
        self.full = regex.compile(pattern)

    def findall(self, text: str) -> list:
        if text.isascii() or max(text) <= "\uffff":
            return self.fast.findall(text)
        return self.full.findall(text)


def as_16bit_re(pattern: str) -> str:
    r"""pattern for `re`, exact on text without characters above U+FFFF (see FastSplitter)."""
    classes = _unicode_classes()
    out, i, in_class = [], 0, False
    while i < len(pattern):
        name = next((n for n in classes if pattern.startswith(n, i)), None)
        if name is not None:
            if in_class and name == r"\S":
                raise ValueError(r"\S inside a character class has no explicit spelling")
            body = classes[name]
            out.append(body if in_class else f"[^{body}]" if name == r"\S" else f"[{body}]")
            i += len(name)
            continue
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class and pattern[i - 1] not in "[^":
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=1)
def _unicode_classes() -> dict:
    r"""{name: the inside of a class of its characters up to U+FFFF} for \p{L}, \p{N}, \s (and \S)."""
    bmp = "".join(chr(c) for c in range(0x10000) if not 0xD800 <= c < 0xE000)  # no surrogates
    classes = {name: _ranges(regex.findall(name, bmp)) for name in (r"\p{L}", r"\p{N}", r"\s")}
    classes[r"\S"] = classes[r"\s"]  # used negated
    return classes


def _ranges(chars) -> str:
    """Characters as the inside of a character class: runs as lo-hi, each end escaped."""
    codes = sorted(map(ord, chars))
    parts, start = [], 0
    for i in range(1, len(codes) + 1):
        if i == len(codes) or codes[i] != codes[i - 1] + 1:
            lo, hi = codes[start], codes[i - 1]
            parts.append(f"\\u{lo:04x}" if lo == hi else f"\\u{lo:04x}-\\u{hi:04x}")
            start = i
    return "".join(parts)


def split_text(compiled, text: str) -> list:
    """The chunks of text, in order; the whole text as one chunk when there is no pattern."""
    if compiled is None:
        return [text] if text else []
    return compiled.findall(text)


def cut_text(text: str, pattern: str, size: int):
    r"""Yield text in pieces of about `size` characters that split into the same chunks, one piece
    after another, as the whole text does; the text whole if the pattern is not a built-in one.

    Pieces bound the memory that a huge text takes to split, keep each piece's chunks in the CPU's
    cache (20 MB split in 64 KB pieces encoded 40% faster than in 1 MB ones), and let worker
    processes share a text. A piece ends just after a newline that sits between two visible ASCII
    characters, as in "x\ny": no chunk of GPT2 or GPT4 holds a newline followed by a non-space,
    and the chunk that ends with that newline is the same whether the text goes on or ends there
    (GPT2's `\s++$` and `\s+(?!\S)` give one lone newline either way). Any other pattern might
    join across such a cut, so its texts are never cut."""
    if len(text) <= size or pattern not in NAMED.values():
        yield text
        return
    start = 0
    while len(text) - start > size:
        cut = _cut_after(text, start + size)
        if cut < 0:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def _cut_after(text: str, i: int) -> int:
    r"""The first safe place to cut text at or after i (just after the newline of "x\ny"), or -1."""
    while True:
        i = text.find("\n", i)
        if i < 0 or i + 1 >= len(text):
            return -1
        if i > 0 and "!" <= text[i - 1] <= "~" and "!" <= text[i + 1] <= "~":
            return i + 1
        i += 1
