"""Near duplicates against brute force (spec T3), the reference MinHash against datasketch bit for bit and the
one-permutation estimate's error (T4), and edit-distance-1 pairs of short lines against brute force."""
import random

import numpy as np
import pytest

from testkit import shared_file
from dataengine_helpers import brute_force_pairs, char_shingles, shakespeare_paragraphs, substitute_words
from nanostack.dataengine import minhash_reference as reference
from nanostack.dataengine.edits import edit1_pairs
from nanostack.dataengine.near import near_duplicates, one_permutation_signatures, shingle_hashes


@pytest.fixture(scope="module")
def planted():
    """1,500 tinyshakespeare paragraphs and 500 copies of them with 1-20% of their words substituted."""
    path = shared_file("tinyshakespeare.txt")
    rng = random.Random(0)
    paragraphs = sorted(set(shakespeare_paragraphs(path)))
    base = rng.sample(paragraphs, 1500)
    vocab = sorted(set(path.read_text().split()))
    copies = [substitute_words(t, rng.uniform(0.01, 0.2), vocab, rng) for t in rng.choices(base, k=500)]
    return base + copies


@pytest.fixture(scope="module")
def truth(planted):
    """Every pair of distinct texts with char-5 Jaccard >= 0.8, by brute force."""
    return brute_force_pairs(planted, 0.8)


def test_near_duplicates_match_brute_force(planted, truth):
    found = near_duplicates(planted, 0.8)
    pairs = {tuple(p) for p in found.pairs.tolist()}
    hit = [p for p in truth if p in pairs]
    band = [p for p, j in truth.items() if j < 0.85]
    assert len(truth) >= 60 and len(band) >= 25  # (measured: 78 pairs, 35 in the band)
    assert len(hit) / len(truth) >= 0.99
    assert sum(p in pairs for p in band) / len(band) >= 0.90
    assert pairs <= set(truth)  # precision 1.0: every pair passed the exact check
    assert all(abs(truth[p] - j) < 1e-12 for p, j in zip(map(tuple, found.pairs.tolist()), found.jaccard))
    labels = found.labels  # clusters: each true pair in one cluster
    assert all(labels[i] == labels[j] for i, j in hit)


def test_near_duplicates_handle_exact_copies_short_and_empty_texts():
    texts = ["abc", "abc", "", "the same long sentence here", "the same long sentence here!", "x", ""]
    found = near_duplicates(texts, 0.8)
    assert found.labels[1] == 0 and found.labels[0] == 0  # exact copies share a cluster
    assert found.labels[4] == 3 and found.labels[5] == 5
    assert {tuple(p) for p in found.pairs.tolist()} == {(3, 4)}


def test_reference_minhash_equals_datasketch_bit_for_bit():
    datasketch = pytest.importorskip("datasketch")
    perms = reference.permutations(128, seed=1)
    for text in ["the quick brown fox jumps over the lazy dog", "naïve café 日本語のテキスト", "abc", ""]:
        shingles = reference.char_shingles(text)
        twin = datasketch.MinHash(num_perm=128, seed=1, scheme="legacy")
        for s in shingles:
            twin.update(s)
        assert np.array_equal(twin.hashvalues, reference.signature(shingles, perms))


def test_one_permutation_estimates_jaccard_within_003(planted, truth):
    """Mean |estimate - Jaccard| over the true near-duplicate pairs (measured 0.025 one-permutation, 0.022
    reference), and no bias."""
    hashes, owners = shingle_hashes(planted)
    sig = one_permutation_signatures(hashes, owners, len(planted))
    perms = reference.permutations(128, seed=1)
    errors, errors_reference = [], []
    for (i, j), true in truth.items():
        errors.append(np.mean(sig[i] == sig[j]) - true)
        ra, rb = (reference.signature(reference.char_shingles(planted[k]), perms) for k in (i, j))
        errors_reference.append(reference.estimate(ra, rb) - true)
    assert np.mean(np.abs(errors)) <= 0.03 and np.mean(np.abs(errors_reference)) <= 0.03
    assert abs(np.mean(errors)) <= 0.01


def test_shingle_hashes_are_exact_for_small_alphabets():
    texts = ["abcdeabcde", "bcdea", "xyz"]
    hashes, owners = shingle_hashes(texts)
    per_text = [set(hashes[owners == i].tolist()) for i in range(3)]
    assert len(per_text[0]) == len(char_shingles(texts[0])) == 5
    assert per_text[1] <= per_text[0] and len(per_text[2]) == 1  # shorter than 5: one shingle of its own
    assert not per_text[2] & per_text[0]


def _one_edit(a: str, b: str) -> bool:
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:k] + long[k + 1:] == short for k in range(len(long)))


def test_edit_distance_one_pairs_match_brute_force():
    names = shared_file("names.txt").read_text().split()
    rng = random.Random(4)
    sample = rng.sample(names, 500)
    sample += [n[:-1] for n in sample[:40]] + [n + "a" for n in sample[40:80]] + [n[0] + "x" + n[2:] for n in
                                                                                   sample[80:120]]
    first = {}
    for i, t in enumerate(sample):
        first.setdefault(t, i)
    distinct = sorted(first.items(), key=lambda kv: kv[1])
    truth = {(i, j) for a, (s, i) in enumerate(distinct) for t, j in distinct[a + 1:] if _one_edit(s, t)}
    found = {tuple(p) for p in edit1_pairs(sample).tolist()}
    assert found == truth and len(truth) >= 120
