"""BPETokenizer: byte-level byte-pair encoding, as GPT-2 and GPT-4 tokenize.

Every text is UTF-8 bytes, so nothing is ever out of vocabulary. The 256 single bytes are the
first tokens; each merge (left id, right id) adds token 256 + i, whose bytes are its two parts'.
Encoding cuts the text into chunks with the split pattern, then in each chunk repeatedly applies
the earliest-learned merge present until none applies (the order training learned them in).
Chunks repeat (" the", " and"), so their ids are cached: encoding a large text is mostly regex
splitting and dictionary look-ups.

Special tokens (e.g. <|endoftext|>) are registered by name and take ids after the merges; the
rules for their text are the Tokenizer interface's (base.py), as tiktoken's.
"""
import json
from array import array
from functools import cached_property
from itertools import chain

from nanostack.errors import UserError
from nanostack.io import write_atomic
from nanostack.tokenizer.base import Tokenizer, read_special_tokens
from nanostack.tokenizer.bpe_encode import ChunkEncoder
from nanostack.tokenizer.bpe_train import collector_paused, count_chunks, train_and_segment
from nanostack.tokenizer.patterns import compile_pattern, resolve_pattern
from nanostack.tokenizer.workers import even_ranges, map_tasks, usable_cores

FORMAT_VERSION = 1
PARALLEL_MIN_CHARS = 1_000_000  # below this much text, starting worker processes costs more than it saves


class BPETokenizer(Tokenizer):
    kind = "bpe"

    def __init__(self, merges, pattern="", special_tokens=None, byte_ids=None):
        """merges: [(left id, right id)], merge i making token 256 + i. byte_ids[b] is the id of the
        single byte b (identity, except in files such as GPT-2's where the byte tokens are permuted)."""
        self.merges = [tuple(m) for m in merges]
        self.pattern = pattern
        self.byte_ids = list(range(256)) if byte_ids is None else list(byte_ids)
        self.ranks = {pair: 256 + i for i, pair in enumerate(self.merges)}  # pair -> the token it makes
        self.vocab = [b""] * 256
        for b, i in enumerate(self.byte_ids):
            self.vocab[i] = bytes([b])
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        super().__init__(special_tokens)
        self._compiled = compile_pattern(pattern)

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def train(cls, text_or_iterable, vocab_size: int, pattern="gpt4", special_tokens=None, progress=None):
        """Learn vocab_size - 256 - len(special_tokens) merges from a text or an iterable of texts.
        Special tokens are given as names (ids follow the merges) or as {name: id}."""
        names = list(special_tokens or [])
        num_merges = vocab_size - 256 - len(names)
        if num_merges < 0:
            raise UserError(f"vocab_size {vocab_size} is too small: the 256 byte tokens and {len(names)} special "
                            f"token(s) need {256 + len(names)}", f"use a vocab_size of at least {256 + len(names)}")
        pattern = resolve_pattern(pattern)
        texts = [text_or_iterable] if isinstance(text_or_iterable, str) else text_or_iterable
        chunk_counts = count_chunks(texts, pattern)
        merges, segments = train_and_segment(chunk_counts, num_merges, progress)
        if isinstance(special_tokens, dict):
            specials = dict(special_tokens)
        else:
            specials = {name: 256 + len(merges) + i for i, name in enumerate(names)}
        tokenizer = cls(merges, pattern, specials)
        tokenizer._chunk_encoder.remember(chunk_counts, segments)  # the training text encodes without BPE
        return tokenizer

    @classmethod
    def from_tiktoken(cls, path, pattern="gpt2", special_tokens=None):
        from nanostack.tokenizer.tiktoken_files import load_tiktoken_ranks  # noqa: PLC0415 (keeps the base light)

        merges, byte_ids = load_tiktoken_ranks(path)
        specials = {"<|endoftext|>": 50256} if special_tokens is None else special_tokens
        return cls(merges, resolve_pattern(pattern), specials, byte_ids)

    @property
    def ordinary_vocab_size(self) -> int:
        return len(self.vocab)

    # ---- encoding ---------------------------------------------------------------------------
    def encode_ordinary(self, text: str) -> list:
        """Token ids of text, special-token text included as plain text."""
        return self._chunk_encoder.encode(text)

    @cached_property
    def _chunk_encoder(self) -> ChunkEncoder:
        """Split, look up, BPE on new chunks (bpe_encode.py); built on first use, with its cache."""
        return ChunkEncoder(self._compiled, self.pattern, self.vocab, self.ranks, self.byte_ids)

    def encode_batch(self, texts, allowed_special="none_raise", workers=None) -> list:
        """encode() of each text, over `workers` processes (default: every usable core) when it pays.
        Forked workers inherit this tokenizer and every chunk it has already seen."""
        texts = list(texts)
        workers = min(workers or usable_cores(), len(texts))
        if workers <= 1 or sum(map(len, texts)) < PARALLEL_MIN_CHARS:
            return [self.encode(t, allowed_special) for t in texts]
        self._allowed(allowed_special)  # a bad argument is refused here, not in every worker
        _ = self._chunk_encoder  # built here, before the fork, so that no worker builds its own
        ranges = even_ranges(texts, workers * 32)  # small tasks: the processes finish within ~30 ms of each other
        shared = (self, texts, allowed_special, ranges)
        with collector_paused():  # the result is millions of ints in acyclic lists: nothing to collect
            return list(chain.from_iterable(map_tasks(_encode_range, shared, len(ranges), workers, _pack, _unpack)))

    # ---- decoding ---------------------------------------------------------------------------
    def _decode_ordinary_bytes(self, ids) -> bytes:
        return b"".join(map(self.vocab.__getitem__, ids))

    # ---- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"kind": self.kind, "version": FORMAT_VERSION, "pattern": self.pattern,
             "special_tokens": self.special_tokens}
        if self.byte_ids != list(range(256)):
            d["byte_ids"] = self.byte_ids
        d["merges"] = [list(m) for m in self.merges]
        return d

    def save(self, path) -> None:
        """One JSON file; each merge on its own line, with the text of the token it makes."""
        d = self.to_dict()
        merges = d.pop("merges")
        head = json.dumps(d, indent=1, ensure_ascii=False)[:-2]
        lines = [f"  [{a}, {b}]" for a, b in merges]
        tokens = [json.dumps(self.vocab[256 + i].decode("utf-8", errors="replace"), ensure_ascii=False)
                  for i in range(len(merges))]
        body = ",\n".join(f"{line}" for line in lines)
        comment = ",\n".join(f"  {t}" for t in tokens)
        write_atomic(path, f'{head},\n "merges": [\n{body}\n ],\n "merged_tokens (for reading only)": [\n'
                           f"{comment}\n ]\n}}\n")

    @classmethod
    def from_dict(cls, d: dict, source="tokenizer file") -> "BPETokenizer":
        if d.get("kind") != cls.kind:
            raise UserError(f"{source} is not a BPE tokenizer (kind {d.get('kind')!r})",
                            "point at a BPE tokenizer file")
        if d.get("version") != FORMAT_VERSION:
            raise UserError(f"{source} has format version {d.get('version')!r}; this nanostack reads {FORMAT_VERSION}",
                            "re-train or re-save the tokenizer with this version")
        try:
            merges = [(int(a), int(b)) for a, b in d["merges"]]
            byte_ids = d.get("byte_ids")
            pattern = d.get("pattern", "")
            if not isinstance(pattern, str):
                raise TypeError("pattern is not a string")
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{source} is malformed ({type(e).__name__}: {e})",
                            "restore it or train it again") from None
        _check_merges(merges, byte_ids, source)
        return cls(merges, resolve_pattern(pattern) if pattern else "", read_special_tokens(d, source), byte_ids)

    def to_tiktoken(self, name="nanostack"):
        """A tiktoken.Encoding with the same ids: tiktoken's compiled encoder as a fast path."""
        from nanostack.tokenizer.tiktoken_files import to_tiktoken_encoding  # noqa: PLC0415

        return to_tiktoken_encoding(self, name)


def _check_merges(merges, byte_ids, source):
    if byte_ids is not None and sorted(byte_ids) != list(range(256)):
        raise UserError(f"{source}: byte_ids is not a permutation of 0..255", "restore the file or train it again")
    for i, (a, b) in enumerate(merges):
        if not (0 <= a < 256 + i and 0 <= b < 256 + i):
            raise UserError(f"{source}: merge {i} ({a}, {b}) uses a token that does not exist yet",
                            "restore the file or train it again")


def _encode_range(shared, task) -> list:
    """[ids of each text] of the range of texts numbered task."""
    tokenizer, texts, allowed_special, ranges = shared
    start, stop = ranges[task]
    return [tokenizer.encode(texts[i], allowed_special) for i in range(start, stop)]


def _pack(lists):  # 4 bytes an id to send back, where a pickled list takes ~5 and unpickles 4x slower
    return [array("I", ids) for ids in lists]


def _unpack(arrays):
    return [ids.tolist() for ids in arrays]
