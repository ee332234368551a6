"""The reference MinHash: k independent permutations, the textbook scheme, kept to check the fast one.

Each shingle (bytes) is hashed once to 32 bits (the first 4 bytes of its SHA-1, little-endian), then
permuted k times by h -> ((a_k * h + b_k) mod (2^61 - 1)) mod 2^32, with (a_k, b_k) drawn from a
seeded numpy RandomState; the signature keeps each permutation's minimum. The product a_k * h is
taken in uint64 and wraps, as it does in datasketch's "legacy" scheme, which this reproduces bit
for bit (tests/test_dataengine_near.py checks it against datasketch). It costs k multiply-adds per
shingle where one-permutation MinHash (near.py) costs one, which is why the engine does not use it.
"""
import hashlib
import struct

import numpy as np

MERSENNE = np.uint64((1 << 61) - 1)
MAX32 = np.uint64((1 << 32) - 1)


def permutations(num_perm: int = 128, seed: int = 1):
    """(a, b): num_perm pairs, a in [1, 2^61 - 1), b in [0, 2^61 - 1), drawn a then b per permutation."""
    gen = np.random.RandomState(seed)
    pairs = [(gen.randint(1, MERSENNE, dtype=np.uint64), gen.randint(0, MERSENNE, dtype=np.uint64))
             for _ in range(num_perm)]
    a, b = np.array(pairs, dtype=np.uint64).T
    return a, b


def sha1_32(data: bytes) -> int:
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def signature(shingles, perms) -> np.ndarray:
    """The k-permutation MinHash of a set of byte strings (all MAX32 when it is empty)."""
    a, b = perms
    hv = np.array([sha1_32(s) for s in set(shingles)], dtype=np.uint64)
    if not len(hv):
        return np.full(len(a), MAX32, dtype=np.uint64)
    with np.errstate(over="ignore"):
        phv = ((hv[:, None] * a[None, :] + b[None, :]) % MERSENNE) & MAX32
    return phv.min(axis=0)


def char_shingles(text: str, k: int = 5) -> set:
    """The character k-grams of a text as UTF-8 bytes (the text itself when it is shorter than k)."""
    if len(text) < k:
        return {text.encode("utf-8")}
    return {text[i:i + k].encode("utf-8") for i in range(len(text) - k + 1)}


def estimate(sig_a, sig_b) -> float:
    return float(np.mean(sig_a == sig_b))
