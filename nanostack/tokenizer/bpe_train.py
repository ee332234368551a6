"""Training byte-level BPE: find the merges, most frequent pair first.

1. Count the chunks. The text is pre-split (patterns.py) and each distinct chunk is kept once,
   with how often it occurs: memory grows with the vocabulary of the text, not its length.
   A large input is shared out to worker processes, one per core; their counts add up.
2. Count the pairs. Every adjacent pair of tokens in every chunk, weighted by the chunk's count,
   and for each pair the chunks that hold it.
3. Merge, one pair at a time. A heap hands out the pair with the highest count; ties go to the
   smallest (left id, right id). That rule makes training deterministic, and equal to rustbpe's.
   Merging rewrites only the chunks that hold the pair and adjusts the counts of the pairs around
   each merge (-n for the pairs it breaks, +n for those it makes, n being the chunk's count).
   Counts only ever fall for a pair already in the heap, so the heap is refreshed lazily: a popped
   entry whose count is out of date goes back with its true count.

The merge loop is plain Python tuned for CPython: a pair is one int (left * K + right, ordered as
the tuple would be), a chunk is a list of ids ending in minus its count, and each pair's entry
lists those lists themselves. list.count and list.index find a pair's left id at C speed, so a
chunk that no longer holds the pair (about half of the visits) costs one scan, and a long chunk
(a text without a split pattern is one) is rebuilt once per merge, not once per occurrence.
"""
import gc
import heapq
from collections import Counter, defaultdict
from contextlib import contextmanager
from itertools import repeat
from operator import add, mul

from nanostack.tokenizer.patterns import compile_pattern, cut_text, split_text
from nanostack.tokenizer.workers import even_ranges, share_work, usable_cores

PARALLEL_MIN_CHARS = 2_000_000  # below this, starting worker processes costs more than it saves
ROUND_CHARS = 50_000_000  # a stream of texts is counted this much at a time
PIECE_CHARS = 64_000  # a long text is split in pieces about this long (patterns.cut_text): 30% faster than 1 MB


def count_chunks(texts, pattern: str, workers=None) -> Counter:
    """{chunk (str): occurrences} over an iterable of texts, counted by `workers` processes
    (default: every usable core) when there is enough text to pay for starting them."""
    texts = [texts] if isinstance(texts, str) else texts
    workers = workers or usable_cores()
    compiled = compile_pattern(pattern)
    counts = Counter()
    for pieces in _rounds(texts, pattern):
        if workers == 1 or sum(map(len, pieces)) < PARALLEL_MIN_CHARS:
            counts.update(_count_ranges((compiled, pieces, [(0, len(pieces))]), [0]))
            continue
        ranges = even_ranges(pieces, workers * 4)
        for part in share_work(_count_ranges, (compiled, pieces, ranges), len(ranges), workers):
            counts.update(part)
    return counts


def _rounds(texts, pattern):
    """Lists of pieces of the texts (long texts cut, patterns.cut_text): all of them for a list of
    texts, about ROUND_CHARS at a time for a stream."""
    pieces, filled = [], 0
    stream = not isinstance(texts, (list, tuple))
    for text in texts:
        for piece in cut_text(text, pattern, PIECE_CHARS):
            pieces.append(piece)
            filled += len(piece)
        if stream and filled >= ROUND_CHARS:
            yield pieces
            pieces, filled = [], 0
    if pieces:
        yield pieces


def _count_ranges(shared, tasks) -> Counter:
    compiled, pieces, ranges = shared
    counts = Counter()
    for task in tasks:
        start, stop = ranges[task]
        for piece in pieces[start:stop]:
            counts.update(split_text(compiled, piece))
    return counts


def train_merges(chunk_counts: dict, num_merges: int, progress=None) -> list:
    """The first num_merges merges, as (left id, right id) pairs; merge i makes token 256 + i.
    Fewer when the text runs out of pairs. progress(i) is called after each merge."""
    return train_and_segment(chunk_counts, num_merges, progress)[0]


def train_and_segment(chunk_counts: dict, num_merges: int, progress=None):
    """(merges, segments): the merges as in train_merges, and for each chunk of chunk_counts (in
    its order) its token ids after all the merges, which is how BPE encodes that chunk."""
    with collector_paused():
        words, merges = _train(chunk_counts, num_merges, progress)
        for word in words:
            word.pop()  # the count at the end
        return merges, words


@contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for a while. Training builds millions of small lists
    and ints, none in a cycle, and the collector spent 40% of the training time scanning them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _train(chunk_counts: dict, num_merges: int, progress):
    K = 256 + max(num_merges, 0)  # every id is below K: pair (a, b) is the int a * K + b
    KK = K * K
    # each word: the chunk's byte ids, then minus its count (which no id equals)
    words = [[*chunk.encode("utf-8"), -n] for chunk, n in chunk_counts.items()]
    pair_counts, where = _count_pairs(words, K)
    heap = [pair - count * KK for pair, count in pair_counts.items()]  # highest count, then smallest pair
    heapq.heapify(heap)
    heappop, heappush = heapq.heappop, heapq.heappush
    merges = []
    while len(merges) < num_merges and heap:
        entry = heappop(heap)
        pair = entry % KK
        current = pair_counts.get(pair, 0)
        if current <= 0:
            continue
        if current != -(entry // KK):  # stale: the pair lost occurrences since it was queued
            heappush(heap, pair - current * KK)
            continue
        new_id = 256 + len(merges)
        a, b = divmod(pair, K)
        merges.append((a, b))
        made = defaultdict(int)  # counts of the pairs that hold new_id, all new
        for word in where.pop(pair):
            # Each (a, b) in word, left to right, becomes new_id: the pair on its left, (x, a),
            # becomes (x, new_id) and the one on its right, (b, y), becomes (new_id, y).
            remaining = word.count(a)  # a's not yet looked at
            if not remaining:
                continue  # the word lost the pair to an earlier merge
            n = -word[-1]
            last = len(word) - 2  # the index of the last id
            hits, made_here = [], []
            start = 0
            while remaining:
                i = word.index(a, start)
                remaining -= 1
                if i < last and word[i + 1] == b:
                    if i:
                        if hits and hits[-1] == i - 2:  # right after the last one: (new_id, a) is undone
                            x = new_id
                            made[new_id * K + a] -= n
                        else:
                            x = word[i - 1]
                            pair_counts[x * K + a] -= n
                        p = x * K + new_id
                        made[p] += n
                        made_here.append(p)
                    if i + 1 < last:
                        y = word[i + 2]
                        pair_counts[b * K + y] -= n  # when y is a, (b, y) may be the pair itself: dropped below
                        p = new_id * K + y
                        made[p] += n
                        made_here.append(p)
                    hits.append(i)
                    if a == b:
                        remaining -= 1  # the b was an a too
                    start = i + 2
                else:
                    start = i + 1
            if len(hits) == 1:
                i = hits[0]
                word[i] = new_id
                del word[i + 1]
            elif hits:  # rebuilt in one pass: deleting each pair in place costs a long word's length each time
                out, start = [], 0
                for i in hits:
                    out += word[start:i]
                    out.append(new_id)
                    start = i + 2
                out += word[start:]
                word[:] = out
                made_here = set(made_here)  # a long word is listed once per pair
            for p in made_here:
                where[p].append(word)
        del pair_counts[pair]
        for p, count in made.items():
            if count > 0:
                pair_counts[p] = count
                heappush(heap, p - count * KK)
        if progress is not None:
            progress(len(merges))
    return words, merges


def _count_pairs(words, K):
    """pair -> summed count, and pair -> the words that hold it (a long word once per pair)."""
    pair_counts = defaultdict(int)
    where = defaultdict(list)
    for word in words:
        n = -word[-1]
        pairs = map(add, map(mul, word[:-2], repeat(K)), word[1:-1])  # x * K + y for each pair
        if len(word) > 9:
            pairs = list(pairs)
            for p in pairs:
                pair_counts[p] += n
            for p in set(pairs):
                where[p].append(word)
        else:  # a short word may be listed twice for one pair: a second visit finds nothing to do
            for p in pairs:
                pair_counts[p] += n
                where[p].append(word)
    return pair_counts, where
