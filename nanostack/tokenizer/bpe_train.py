"""Training byte-level BPE: find the merges, most frequent pair first.

1. Count the chunks. The text is pre-split (patterns.py) and each distinct chunk is kept once,
   with how often it occurs: memory grows with the vocabulary of the text, not its length.
2. Count the pairs. Every adjacent pair of tokens in every chunk, weighted by the chunk's count,
   and for each pair the set of chunks that hold it.
3. Merge, one pair at a time. A heap hands out the pair with the highest count; ties go to the
   smallest (left id, right id). That rule makes training deterministic, and equal to rustbpe's.
   Merging rewrites only the chunks that hold the pair and adjusts the counts of the pairs around
   each merge (-1 for the pairs it breaks, +1 for those it makes). Counts only ever fall for a pair
   already in the heap, so the heap is refreshed lazily: a popped entry whose count is out of date
   goes back with its true count.
"""
import gc
import heapq
from collections import Counter, defaultdict
from contextlib import contextmanager

from nanostack.tokenizer.patterns import compile_pattern, split_text


def count_chunks(texts, pattern: str) -> Counter:
    """{chunk (str): occurrences} over an iterable of texts."""
    compiled = compile_pattern(pattern)
    counts = Counter()
    for text in texts:
        counts.update(split_text(compiled, text))
    return counts


def train_merges(chunk_counts: dict, num_merges: int, progress=None) -> list:
    """The first num_merges merges, as (left id, right id) pairs; merge i makes token 256 + i.
    Fewer when the text runs out of pairs. progress(i) is called after each merge."""
    with collector_paused():
        return _train_merges(chunk_counts, num_merges, progress)


@contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for a while. Training builds millions of small lists,
    tuples and sets, none in a cycle, and the collector spent 40% of the training time scanning them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _train_merges(chunk_counts: dict, num_merges: int, progress=None) -> list:
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    counts = list(chunk_counts.values())
    pair_counts = defaultdict(int)
    where = defaultdict(set)  # pair -> indices of the words that may hold it
    for i, word in enumerate(words):
        n = counts[i]
        for pair in zip(word, word[1:]):
            pair_counts[pair] += n
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    while len(merges) < num_merges and heap:
        negative_count, pair = heapq.heappop(heap)
        current = pair_counts.get(pair, 0)
        if current <= 0:
            continue
        if current != -negative_count:  # stale: the pair lost occurrences since it was queued
            heapq.heappush(heap, (-current, pair))
            continue
        new_id = 256 + len(merges)
        merges.append(pair)
        created = set()
        for i in where.pop(pair):
            word = words[i]
            if len(word) < 2:
                continue
            words[i] = merge_word(word, pair, new_id, pair_counts, counts[i], where, i, created)
        pair_counts.pop(pair, None)
        for p in created:
            c = pair_counts.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
        if progress is not None:
            progress(len(merges))
    return merges


def merge_word(word, pair, new_id, pair_counts, n, where, index, created) -> list:
    """word with every non-overlapping occurrence of pair (left to right) replaced by new_id;
    the pair counts around each occurrence move by n (the word's count)."""
    a, b = pair
    out = []
    i, length = 0, len(word)
    while i < length:
        if i + 1 < length and word[i] == a and word[i + 1] == b:
            if out:  # the pair on the left, (x, a), becomes (x, new)
                x = out[-1]
                pair_counts[(x, a)] -= n
                left = (x, new_id)
                pair_counts[left] += n
                where[left].add(index)
                created.add(left)
            pair_counts[pair] -= n
            if i + 2 < length:  # the pair on the right, (b, y), becomes (new, y)
                y = word[i + 2]
                pair_counts[(b, y)] -= n
                right = (new_id, y)
                pair_counts[right] += n
                where[right].add(index)
                created.add(right)
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out
