"""Near-duplicate documents: character 5-gram shingles, one-permutation MinHash, LSH banding, and an exact
Jaccard check of every candidate pair (so every reported pair really is at or above the threshold).

- Shingles are character 5-grams (with 5% of words substituted, char-5 Jaccard averages 0.86, word-5
  only 0.69). A 5-gram packs its characters' ranks in the corpus alphabet into one 64-bit integer,
  exactly (injective) whenever 5 ranks fit in 60 bits, i.e. for alphabets up to 4,095 characters,
  then goes through a bijective mixer. So comparing hash sets is comparing shingle sets. A text
  shorter than 5 characters is one shingle of its own. Larger alphabets fall back to a 64-bit hash.
- One-permutation MinHash (Li, Owen & Zhang 2012): the mixed hash's top 7 bits pick one of 128 bins,
  the rest is the value; each bin keeps its minimum. Empty bins borrow from the nearest non-empty bin
  to the right or the left (a fixed random direction per bin), plus distance × 2^57 (densification,
  Shrivastava & Li 2014). One hash per shingle instead of 128 is what makes it fast.
- LSH: 16 bands of 8 rows; texts equal in a band are candidates. P(candidate) = 1 - (1 - J^8)^16:
  0.95 at J = 0.8, 0.99 at 0.85; the S-curve's midpoint is 0.71, biased toward recall because the
  exact check removes false candidates anyway.
- Exact check: |A ∩ B| / |A ∪ B| of the two shingle sets; pairs at or above the threshold are
  joined by union-find into clusters.

Everything runs on numpy arrays over all texts at once; identical texts are collapsed first.
"""
from dataclasses import dataclass

import numpy as np

SHINGLE = 5
BINS = 128
BANDS, ROWS = 16, 8
VALUE_BITS = 57  # 64 - log2(BINS)
VALUE_MASK = np.uint64((1 << VALUE_BITS) - 1)
EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
CHUNK_CHARS = 1 << 23  # shingle this many characters at a time (bounds memory)
DIRECTION = np.random.default_rng(20140622).integers(0, 2, BINS).astype(bool)  # densify from the right?


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijection of uint64 that spreads every input bit over every output bit."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def shingle_hashes(texts, alphabet=None):
    """(hashes uint64, text index int64), grouped by text in order: every character 5-gram of every text,
    mixed; equal 5-grams give equal hashes, different ones different hashes (see the module docstring).
    alphabet: the sorted code points to rank characters by (default: those of texts), so that separate
    calls agree."""
    texts = list(texts)
    if not texts:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    codepoints = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    if alphabet is None:
        present = np.bincount(codepoints, minlength=1) > 0 if len(codepoints) else np.zeros(1, bool)
        alphabet = np.flatnonzero(present).astype(np.uint32)
    rank_of = np.zeros(int(alphabet[-1]) + 2 if len(alphabet) else 1, dtype=np.uint64)
    rank_of[alphabet] = np.arange(1, len(alphabet) + 1, dtype=np.uint64)  # 0 is never a rank
    ranks = rank_of[codepoints]
    bits = int(len(alphabet) + 1).bit_length()
    exact = bits * SHINGLE <= 60
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    hashes, owners = [], []
    n = len(ranks)
    if n >= SHINGLE:
        m = n - SHINGLE + 1
        doc = np.repeat(np.arange(len(texts)), lengths)[:m]
        valid = np.ones(n, dtype=bool)  # a shingle may not run past its text's end
        tails = (starts + lengths)[:, None] - np.arange(1, SHINGLE)[None, :]
        valid[tails[tails >= np.repeat(starts, SHINGLE - 1).reshape(-1, SHINGLE - 1)]] = False
        valid = valid[:m]
        packed = np.zeros(m, dtype=np.uint64)
        for k in range(SHINGLE):
            part = ranks[k:k + m]
            if exact:
                packed |= part << np.uint64(bits * k)
            else:
                packed = mix64(packed ^ part) if k else part.copy()
        hashes.append(packed[valid])
        owners.append(doc[valid])
    short = np.flatnonzero((lengths > 0) & (lengths < SHINGLE))
    if len(short):  # one shingle each: the whole text, with its length in the top bits
        packed = np.zeros(len(short), dtype=np.uint64)
        for k in range(SHINGLE - 1):
            has = lengths[short] > k
            idx = np.where(has, starts[short] + k, 0)
            packed |= np.where(has, ranks[idx] << np.uint64(bits * k if exact else 12 * k), np.uint64(0))
        packed |= lengths[short].astype(np.uint64) << np.uint64(60)
        hashes.append(packed)
        owners.append(short)
    hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    owners = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    order = np.argsort(owners, kind="stable")  # two sorted runs: a merge
    return mix64(hashes[order]), owners[order].astype(np.int64)


def one_permutation_signatures(hashes, owners, n_texts: int) -> np.ndarray:
    """(n_texts, 128) uint64: the minimum value per bin, empty bins densified by rotation; a text without
    shingles keeps a row of EMPTY."""
    sig = np.full(n_texts * BINS, EMPTY, dtype=np.uint64)
    bins = (hashes >> np.uint64(VALUE_BITS)).astype(np.int64)
    np.minimum.at(sig, owners * BINS + bins, hashes & VALUE_MASK)
    sig = sig.reshape(n_texts, BINS)
    return densify(sig)


def densify(sig: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the nearest non-empty bin in its direction (circularly), plus distance
    x 2^57 so that a borrowed value never equals an own one. The direction is a fixed random bit per
    bin, the same for every text (the "improved" densification, Shrivastava & Li 2014), which halves
    the variance of borrowing always from the right."""
    empty = sig == EMPTY
    needs = empty.any(axis=1) & ~empty.all(axis=1)
    if not needs.any():
        return sig
    rows, hole = sig[needs], empty[needs]
    cols = np.arange(BINS)
    far = 4 * BINS
    right = np.where(hole, far, cols)  # next non-empty at or after each bin
    right = np.concatenate([right, np.where(right < BINS, right + BINS, far)], axis=1)
    right = np.minimum.accumulate(right[:, ::-1], axis=1)[:, ::-1][:, :BINS]
    left = np.where(hole, -far, cols)  # previous non-empty at or before each bin
    left = np.concatenate([np.where(left >= 0, left - BINS, -far), left], axis=1)
    left = np.maximum.accumulate(left, axis=1)[:, BINS:]
    source = np.where(DIRECTION, right, left)
    distance = np.abs(source - cols).astype(np.uint64)
    borrowed = np.take_along_axis(rows, source % BINS, axis=1) + (distance << np.uint64(VALUE_BITS))
    sig[needs] = np.where(hole, borrowed, rows)
    return sig


def band_keys(sig: np.ndarray) -> np.ndarray:
    """(n_texts, BANDS) uint64: one hash per band of ROWS signature values."""
    keys = np.empty((len(sig), BANDS), dtype=np.uint64)
    for b in range(BANDS):
        h = mix64(np.full(len(sig), b + 1, dtype=np.uint64))
        for r in range(ROWS):
            h = mix64(h ^ sig[:, b * ROWS + r])
        keys[:, b] = h
    return keys


def candidate_pairs(keys: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """(k, 2) int64 pairs i < j of texts that agree on at least one band (texts not usable are skipped)."""
    found = []
    index = np.flatnonzero(usable)
    for b in range(keys.shape[1]):
        column = keys[index, b]
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            continue
        starts = np.flatnonzero(np.concatenate([[True], ~same]))
        sizes = np.diff(np.concatenate([starts, [len(ordered)]]))
        for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist()):
            members = np.sort(index[order[start:start + size]])
            i, j = np.triu_indices(size, k=1)
            found.append(np.stack([members[i], members[j]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


class ShingleSets:
    """Each text's sorted, distinct shingle hashes (made on first use), for exact Jaccard."""

    def __init__(self, hashes, owners, n_texts: int):
        self.hashes = hashes
        self.bounds = np.searchsorted(owners, np.arange(n_texts + 1))  # owners are grouped by text
        self._sets = {}

    def get(self, i: int) -> np.ndarray:
        found = self._sets.get(i)
        if found is None:
            found = self._sets[i] = np.unique(self.hashes[self.bounds[i]:self.bounds[i + 1]])
        return found

    def size(self, i: int) -> int:
        return len(self.get(i))

    def jaccard(self, i: int, j: int) -> float:
        a, b = self.get(i), self.get(j)
        if not len(a) and not len(b):
            return 1.0
        inter = len(np.intersect1d(a, b, assume_unique=True))
        return inter / (len(a) + len(b) - inter)


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def labels(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)


@dataclass
class NearDuplicates:
    pairs: np.ndarray       # (k, 2) input indices i < j of distinct texts with Jaccard >= threshold
    jaccard: np.ndarray     # (k,) their exact Jaccard
    labels: np.ndarray      # per input text: the smallest index of its cluster (exact copies included)
    candidates: int         # pairs the LSH proposed (before the exact check)
    threshold: float


def near_duplicates(texts, threshold: float = 0.8) -> NearDuplicates:
    """Near-duplicate pairs and clusters of texts (documents: paragraphs, files, prompts)."""
    texts = list(texts)
    first_of, inverse = {}, np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        inverse[i] = first_of.setdefault(t, len(first_of))
    distinct = list(first_of)
    _, representative = np.unique(inverse, return_index=True)  # each distinct text's first index
    hashes, owners = shingle_hashes_chunked(distinct)
    sig = one_permutation_signatures(hashes, owners, len(distinct))
    usable = ~(sig == EMPTY).all(axis=1)
    candidates = candidate_pairs(band_keys(sig), usable)
    sets = ShingleSets(hashes, owners, len(distinct))
    kept, values = [], []
    for i, j in candidates.tolist():
        small, large = sorted((sets.size(i), sets.size(j)))
        if small < threshold * large:  # Jaccard <= |small| / |large|: cannot reach the threshold
            continue
        jac = sets.jaccard(i, j)
        if jac >= threshold:
            kept.append((i, j))
            values.append(jac)
    groups = UnionFind(len(distinct))
    for i, j in kept:
        groups.union(i, j)
    group_labels = groups.labels()
    labels = representative[group_labels][inverse]
    pairs = representative[np.array(kept, dtype=np.int64).reshape(-1, 2)]
    return NearDuplicates(np.sort(pairs, axis=1), np.array(values), labels, len(candidates), threshold)


def shingle_hashes_chunked(texts):
    """shingle_hashes over groups of texts of about CHUNK_CHARS characters each (bounded memory), all
    ranked by one alphabet so equal shingles in two groups hash equally."""
    if sum(map(len, texts)) <= CHUNK_CHARS:
        return shingle_hashes(texts)
    chars = set()
    for t in texts:
        chars.update(t)
    alphabet = np.array(sorted(map(ord, chars)), dtype=np.uint32)  # noqa: C414
    hashes, owners, first, size = [], [], 0, 0
    for i, t in enumerate(texts):
        size += len(t)
        if size >= CHUNK_CHARS or i == len(texts) - 1:
            h, o = shingle_hashes(texts[first:i + 1], alphabet)
            hashes.append(h)
            owners.append(o + first)
            first, size = i + 1, 0
    return np.concatenate(hashes), np.concatenate(owners)
