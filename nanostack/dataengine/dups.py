"""Duplicates and leaks: which examples are copies of each other (exactly, after normalization, or
nearly), and which copies cross from the test split into train.

A clustering is one label per row: rows with equal labels are copies (the label is the cluster's
first row). Exact copies have equal text; normalized ones equal normalize(text) (NFKC, casefold,
whitespace); near ones are MinHash + exact-Jaccard clusters of the normalized documents (so every
normalized copy is a near copy too), and for short lines
(median under 32 characters) the pairs one edit apart, which are reported and never merged into
clusters (names.txt would chain most names together). A leak is a test row whose cluster also holds
a train row; the 13-gram test is GPT-3's contamination check: word 13-grams of test examples that
occur in any train example.
"""
from dataclasses import dataclass

import numpy as np

from nanostack.dataengine.edits import edit1_pairs
from nanostack.dataengine.near import mix64, near_duplicates
from nanostack.dataengine.text import normalize_all

SHORT_LINES = 32  # median characters below which near duplicates are edit-distance-1 pairs
NGRAM = 13


def labels_of(keys) -> np.ndarray:
    """Each row's cluster label: the first row with an equal key (strings). Rows are grouped by their
    64-bit hash with one numpy sort, then every row is checked equal to its group's first; only if two
    different keys shared a hash does it group with a dictionary instead."""
    keys = keys if isinstance(keys, np.ndarray) and keys.dtype == object else np.array(list(keys), dtype=object)
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))
    order = np.argsort(hashes)  # quicksort: np.unique's stable sort costs several times more
    ordered = hashes[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    first = np.minimum.reduceat(order, starts)  # the lowest row of each group
    group = np.cumsum(np.concatenate([[True], ordered[1:] != ordered[:-1]])) - 1
    labels = np.empty(len(keys), dtype=np.int64)
    labels[order] = first[group]
    if (keys[labels] == keys).all():
        return labels
    seen = {}  # a hash collision (odds ~3e-6 at 1e7 keys): exact grouping
    return np.fromiter((seen.setdefault(k, i) for i, k in enumerate(keys)), dtype=np.int64, count=len(keys))


def exact_labels(texts) -> np.ndarray:
    return labels_of(texts)


def normalized_labels(texts) -> np.ndarray:
    return labels_of(normalize_all(texts))


def is_short(texts) -> bool:
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return len(lengths) > 0 and float(np.median(lengths)) < SHORT_LINES


@dataclass
class Near:
    method: str            # "minhash" (documents) or "edit1" (short lines)
    pairs: np.ndarray      # (k, 2) row pairs (first occurrences of distinct texts)
    labels: np.ndarray     # clusters (minhash), or each row alone (edit1: pairs are never merged)
    candidates: int


def near_labels(texts, threshold: float = 0.8) -> Near:
    texts = list(texts)
    if is_short(texts):
        pairs = edit1_pairs(texts)
        return Near("edit1", pairs, exact_labels(texts), len(pairs))
    found = near_duplicates(normalize_all(texts), threshold)  # so near copies include normalized ones
    return Near("minhash", found.pairs, found.labels, found.candidates)


def cluster_stats(labels: np.ndarray) -> dict:
    """clusters (of 2 rows or more), rows in them, and extra copies (rows beyond each cluster's first)."""
    sizes = np.bincount(labels, minlength=len(labels)) if len(labels) else np.zeros(0, np.int64)
    multi = sizes > 1
    return {"clusters": int(multi.sum()), "rows_in_clusters": int(sizes[multi].sum()),
            "extra_copies": int((sizes[multi] - 1).sum())}


def leaked_rows(labels: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """Boolean per row: a test row whose cluster also holds a train row."""
    train_labels = np.unique(labels[splits == "train"])
    return (splits == "test") & np.isin(labels, train_labels)


def leaked_pairs(pairs: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """Boolean per row: a test row paired with a train row (for edit-distance-1 pairs)."""
    out = np.zeros(len(splits), dtype=bool)
    if not len(pairs):
        return out
    a, b = pairs[:, 0], pairs[:, 1]
    cross = splits[a] != splits[b]
    out[np.where(splits[a] == "test", a, b)[cross]] = True
    return out


def ngram_hashes(texts, vocab: dict, n: int = NGRAM) -> np.ndarray:
    """Distinct hashes of the word n-grams within each text (64-bit; a collision is a 2^-64 event). vocab
    (word -> id) is shared by the calls whose hashes are compared."""
    ids, owners = [], []
    for i, text in enumerate(texts):
        words = text.split()
        if len(words) >= n:
            ids.extend(vocab.setdefault(w, len(vocab)) for w in words)
            owners.extend([i] * len(words))
    if not ids:
        return np.zeros(0, np.uint64)
    ids = np.asarray(ids, dtype=np.uint64)
    owners = np.asarray(owners, dtype=np.int64)
    m = len(ids) - n + 1
    h = mix64(ids[:m] + np.uint64(1))
    for k in range(1, n):
        h = mix64(h ^ (ids[k:k + m] + np.uint64(k + 1) * np.uint64(0x9E3779B97F4A7C15 >> 8)))
    same_text = owners[:m] == owners[n - 1:n - 1 + m]
    return np.unique(h[same_text])


def ngram_overlap(train_texts, test_texts, n: int = NGRAM) -> dict:
    """How many distinct word n-grams of the test split also occur in train."""
    vocab = {}
    test = ngram_hashes(test_texts, vocab, n)
    train = ngram_hashes(train_texts, vocab, n)
    shared = int(np.isin(test, train, assume_unique=True).sum()) if len(test) and len(train) else 0
    return {"n": n, "test_ngrams": int(len(test)), "shared_with_train": shared}
