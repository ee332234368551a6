"""Encoding text with a BPE vocabulary: split it, look each chunk up, and run BPE only on chunks
never seen before.

Most chunks of ordinary text are one token (" the", "self", "    "). The table of those starts
with every token whose bytes are UTF-8 text, so such a chunk costs one dictionary look-up, and
the ids come out as one list of ints built in C. As in tiktoken, a chunk that is a token encodes
as that token. Chunks of two or more tokens are encoded by BPE once and remembered (at most
CACHE_SIZE of them), and spliced in where the look-up found nothing. A trainer can hand over the
encodings it ends with (`remember`), so text encoded right after training needs no BPE at all.

Long texts are encoded in pieces (patterns.cut_text): 20 MB split at once builds a list of millions
of strings, and encoded at half the speed of the same text in 64 KB pieces.

This module does not know special tokens; BPETokenizer.encode handles them.
"""
from itertools import repeat

from nanostack.tokenizer.patterns import cut_text, split_text

CACHE_SIZE = 1_000_000  # multi-token chunks remembered: a stream of distinct chunks must not eat the memory
PIECE_CHARS = 64_000  # a longer text is split this much at a time
NO_MERGE = 1 << 62  # the rank of a pair that no merge joins


class ChunkEncoder:
    def __init__(self, compiled, pattern: str, vocab: list, ranks: dict, byte_ids: list):
        """compiled: the split pattern (patterns.compile_pattern of pattern); vocab[i]: the bytes of
        token i; ranks: (left id, right id) -> the id of the token that merge makes."""
        self.compiled, self.pattern, self.ranks = compiled, pattern, ranks
        self.byte_ids = None if byte_ids == list(range(256)) else list(byte_ids)
        self.one_token = {}  # chunk -> its id, for chunks that are one token
        twice = set()
        for i, token in enumerate(vocab):
            try:
                text = token.decode("utf-8")
            except UnicodeDecodeError:  # part of a character: never a whole chunk
                continue
            if text in self.one_token:
                twice.add(text)
            self.one_token[text] = i
        for text in twice:  # two tokens with the same bytes: BPE decides which one a chunk gets
            del self.one_token[text]
        self.many_tokens = {}  # chunk -> tuple of its ids, for the others seen so far

    def encode(self, text: str) -> list:
        if len(text) <= PIECE_CHARS:
            return self._encode_piece(text)
        ids = []
        for piece in cut_text(text, self.pattern, PIECE_CHARS):
            ids += self._encode_piece(piece)
        return ids

    def _encode_piece(self, text: str) -> list:
        chunks = split_text(self.compiled, text)
        ids = list(map(self.one_token.get, chunks, repeat(-1)))  # -1 (quicker to find than None): not one token
        if -1 not in ids:
            return ids
        out, start = [], 0
        many, index = self.many_tokens, ids.index
        try:
            while True:
                i = index(-1, start)
                out += ids[start:i]
                chunk = chunks[i]
                segment = many.get(chunk)
                out += self._learn(chunk) if segment is None else segment
                start = i + 1
        except ValueError:  # no -1 left
            out += ids[start:]
        return out

    def _learn(self, chunk: str) -> tuple:
        ids = self.encode_chunk(chunk.encode("utf-8"))
        if len(self.many_tokens) >= CACHE_SIZE:
            self.many_tokens.clear()
        self.many_tokens[chunk] = ids
        return ids

    def remember(self, chunks, segments) -> None:
        """Take chunk -> ids as known (up to CACHE_SIZE of them); ids must be what BPE makes of it."""
        many = self.many_tokens
        for chunk, ids in zip(chunks, segments):
            if len(many) >= CACHE_SIZE:
                break
            if len(ids) > 1 and chunk not in self.one_token:
                many[chunk] = tuple(ids)

    def encode_chunk(self, data: bytes) -> tuple:
        """BPE on one chunk: merge the adjacent pair learned earliest (the leftmost if it occurs
        twice), and repeat until no adjacent pair is a merge. A merge changes only its neighbours'
        ranks."""
        ids = list(data) if self.byte_ids is None else [self.byte_ids[b] for b in data]
        rank_of = self.ranks.get
        ranks = list(map(rank_of, zip(ids, ids[1:]), repeat(NO_MERGE)))  # ranks[i]: the pair ids[i], ids[i+1]
        while ranks:
            best = min(ranks)
            if best == NO_MERGE:
                break
            i = ranks.index(best)
            ids[i:i + 2] = (best,)
            del ranks[i]
            if i > 0:
                ranks[i - 1] = rank_of((ids[i - 1], best), NO_MERGE)
            if i < len(ranks):
                ranks[i] = rank_of((best, ids[i + 1]), NO_MERGE)
        return tuple(ids)
