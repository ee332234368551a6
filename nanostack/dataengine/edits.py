"""Near duplicates among short lines (names, commands): pairs at Levenshtein distance exactly 1.

MinHash over character 5-grams says nothing about a 6-letter name, so short lines use an exact
deletion-neighbourhood index instead: two different strings are one edit apart iff one is the other
with a character deleted (an insertion or a deletion), or both give the same string when the same
position is deleted (a substitution). Each string of length L costs L dictionary probes. names.txt
has about 111k such pairs, most of them real, distinct names (emma, emmy), so these are reported,
never dropped.
"""
import numpy as np


def edit1_pairs(texts) -> np.ndarray:
    """(k, 2) int64 pairs i < j (first occurrences of distinct texts) at edit distance exactly 1."""
    first = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    pairs = set()
    by_deletion = {}
    for text, i in first.items():
        for k in range(len(text)):
            shorter = text[:k] + text[k + 1:]
            j = first.get(shorter)
            if j is not None:
                pairs.add((min(i, j), max(i, j)))
            by_deletion.setdefault((shorter, k), []).append(i)
    for members in by_deletion.values():
        if len(members) > 1:
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    i, j = members[x], members[y]
                    pairs.add((min(i, j), max(i, j)))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.array(sorted(pairs), dtype=np.int64)
