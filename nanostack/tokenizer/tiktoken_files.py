"""tiktoken's formats: read a ranks file (such as GPT-2's) as merges, and export to tiktoken.

A ranks file lists every token as base64 bytes and its rank, which is its id; it stores no
merges. They are recovered: a token of rank r is made by the one merge that BPE, using only the
tokens ranked below r, ends with when run over the token's own bytes. That takes ~0.3 s for GPT-2's
50,000 tokens, so the merges are kept in the cache (io.cache_dir), under the ranks file's hash.

GPT-2's single-byte tokens are not ranked by byte value (byte 33, "!", is token 0, because GPT-2
first listed the printable bytes), so the tokenizer keeps a byte -> id table.
"""
import base64
import binascii
import hashlib
import json
from pathlib import Path

from nanostack.errors import UserError
from nanostack.io import cache_dir, write_atomic


def read_ranks(path, data: bytes) -> dict:
    """{token bytes: rank} from the content of a tiktoken ranks file, with a clear error for a malformed one."""
    ranks = {}
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise UserError(f"{path}, line {n}, is not 'base64-token rank'",
                            "give a tiktoken .tiktoken ranks file") from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise UserError(f"{path}: ranks are not 0..{len(ranks) - 1}, each once", "the file is damaged")
    singles = sorted(rank for token, rank in ranks.items() if len(token) == 1)
    if singles != list(range(256)):
        raise UserError(f"{path}: the 256 single bytes are not ranks 0..255", "this is not a byte-level BPE file")
    return ranks


def load_tiktoken_ranks(path):
    """(merges, byte_ids) of a tiktoken ranks file. Recovering GPT-2's 50,000 merges takes ~0.3 s, most
    of what `nanostack tokenizer encode` spends, so they are kept in the cache under the file's hash."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tiktoken ranks file {path} does not exist", "check the path")
    data = path.read_bytes()
    cached = cache_dir() / "tiktoken_merges" / f"{hashlib.sha256(data).hexdigest()[:32]}.json"
    try:
        known = json.loads(cached.read_text())
        merges, byte_ids = [(int(a), int(b)) for a, b in known["merges"]], [int(i) for i in known["byte_ids"]]
        if len(byte_ids) == 256:
            return merges, byte_ids
    except (OSError, ValueError, KeyError, TypeError):  # not there yet, or damaged: derive it again
        pass
    ranks = read_ranks(path, data)
    byte_ids = [ranks[bytes([b])] for b in range(256)]
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1])[256:]:
        left, right = _last_merge(token, ranks, rank)
        merges.append((ranks[left], ranks[right]))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, json.dumps({"source": str(path), "byte_ids": byte_ids, "merges": merges}))
    except OSError:  # a read-only cache: derive it every time
        pass
    return merges, byte_ids


def _last_merge(token: bytes, ranks: dict, limit: int):
    """The two parts BPE joins last to make token, using only tokens ranked below limit."""
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_rank = None, limit
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best, best_rank = i, r
        if best is None:
            raise UserError(f"token {token!r} (rank {limit}) cannot be built from lower-ranked tokens",
                            "the ranks file is not a BPE vocabulary")
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts[0], parts[1]


def to_tiktoken_encoding(tokenizer, name: str):
    try:
        import tiktoken  # noqa: PLC0415
    except ImportError:
        raise UserError("to_tiktoken needs the tiktoken package", "pip install tiktoken") from None
    ranks = {}
    for i, token in enumerate(tokenizer.vocab):
        if token in ranks:
            raise UserError(f"tokens {ranks[token]} and {i} have the same bytes {token!r}",
                            "tiktoken needs distinct tokens; use the pure-Python encoder for this tokenizer")
        ranks[token] = i
    return tiktoken.Encoding(name, pat_str=tokenizer.pattern or r"[\s\S]+", mergeable_ranks=ranks,
                             special_tokens=tokenizer.special_tokens)
