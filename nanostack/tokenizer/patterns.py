"""Pre-splitting patterns: BPE never merges across the boundaries these regexes draw.

Text is cut into chunks (words with their leading space, runs of digits, punctuation, runs of
whitespace) and each chunk is tokenized on its own, so that " dog", " dog." and " dog!" share
the token " dog". The patterns need the `regex` module (possessive quantifiers and \\p{...}).
"""
import regex

from nanostack.errors import UserError

# GPT-2's pattern (tiktoken's r50k_base / gpt2)
GPT2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
# GPT-4's pattern (cl100k_base), with digits in runs of at most three, as nanochat and rustbpe use it
GPT4 = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
NAMED = {"gpt2": GPT2, "gpt4": GPT4}


def resolve_pattern(pattern) -> str:
    """A named pattern (gpt2, gpt4), a regex of your own, or None / "" for no splitting at all."""
    if pattern is None:
        return ""
    text = NAMED.get(pattern, pattern)
    try:
        regex.compile(text)
    except regex.error as e:
        raise UserError(f"split pattern {pattern!r} is not a valid regex ({e})",
                        "use gpt2, gpt4, none or a valid regex") from None
    return text


def compile_pattern(text: str):
    return regex.compile(text) if text else None


def split_text(compiled, text: str) -> list:
    """The chunks of text, in order; the whole text as one chunk when there is no pattern."""
    if compiled is None:
        return [text] if text else []
    return compiled.findall(text)
