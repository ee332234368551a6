"""Example-per-row data: each line (or each blank-line separated paragraph) of a text is one
example (a name, a command, a poem); the examples kind of Dataset (dataset.py).

A model learns to generate more examples like them. Every example is wrapped by a boundary
token: the model reads boundary + example and must predict example + boundary, so it learns how
examples start and when they end. For lines the boundary is the newline (which no line holds);
for paragraphs, which hold newlines, it is the special token <|endoftext|>. Examples are padded
to the longest one; padded targets are -1, which the loss ignores.

The split is deterministic by seed: 1000 test examples, or 10% of them when there are fewer than
10,000, as makemore splits.
"""
import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from nanostack.data.dataset import Dataset, Example, example_id
from nanostack.data.sources import join_documents, load_corpus
from nanostack.errors import UserError
from nanostack.tokenizer import Tokenizer, TokenizerSpec

LINE_BOUNDARY = "\n"
PARAGRAPH_BOUNDARY = "<|endoftext|>"
MAX_TEST = 1000
MIN_EXAMPLES = 10
BLANK_LINE = re.compile(r"\n[^\S\n]*\n")  # a line holding nothing but spaces separates paragraphs too


@dataclass
class Examples(Dataset):
    source: str
    tokenizer: object
    train_words: list           # the examples' texts, per split
    test_words: list
    data_hash: str
    kind: str = "lines"         # lines or paragraphs
    places: dict = field(default_factory=dict, repr=False)  # text -> [(document, offset)], in order
    _tensors: dict = field(default_factory=dict, repr=False)
    _longest: int = field(default=0, repr=False)
    skipped_files: list = field(default_factory=list)  # files of a folder that were left out

    heldout = "test"

    @property
    def skipped(self) -> list:  # a property in Dataset: a dataclass field of that name cannot be set on 3.11
        return self.skipped_files

    @property
    def boundary(self) -> str:
        return PARAGRAPH_BOUNDARY if self.kind == "paragraphs" else LINE_BOUNDARY

    @property
    def boundary_id(self) -> int:
        ids = self.tokenizer.encode(self.boundary, allowed_special="all")
        if len(ids) != 1:
            raise UserError(f"the example boundary {self.boundary!r} is {len(ids)} tokens for this tokenizer",
                            "use a tokenizer that has it as one token")
        return int(ids[0])

    @property
    def longest(self) -> int:
        """Tokens in the longest example, plus its boundary: the length of every (padded) row."""
        if not self._longest:
            self._longest = int(encode_flat(self.train_words + self.test_words, self.tokenizer)[1].max()) + 1
        return self._longest

    def _length(self, word: str) -> int:
        return len(self.tokenizer.encode(word))

    def words(self, split: str) -> list:
        return self.train_words if self.split_name(split) == "train" else self.test_words

    def block_size(self, requested=None, log=print) -> int:
        """The data's own length (the longest example + its boundary) unless a length was asked for. An
        asked-for length is kept: examples that do not fit it are left out, and the count is said."""
        if not requested:
            return self.longest
        too_long = {w for w in self.train_words + self.test_words if self._length(w) + 1 > requested}
        if too_long:
            log(f"note: {len(too_long)} example(s) of {self.source} are longer than block_size {requested} allows "
                f"(the longest needs {self.longest}); they are left out. Raise --block-size to keep them.")
            self.train_words = [w for w in self.train_words if w not in too_long]
            self.test_words = [w for w in self.test_words if w not in too_long]
            self._tensors.clear()
            self._longest = 0
            if not self.train_words or not self.test_words:
                raise UserError(f"no example of {self.source} fits block_size {requested}",
                                f"raise --block-size to at least {self.longest}")
        return requested

    def tensors(self, split: str):
        """(x, y) int64 tensors (n, longest): x = boundary + example, y = example + boundary, padded."""
        split = self.split_name(split)
        if split not in self._tensors:
            words = self.words(split)
            self._tensors[split] = encode_examples(words, self.tokenizer, self.longest, self.boundary_id)
        return self._tensors[split]

    def batch(self, split, batch_size, block_size, generator, device="cpu"):
        """batch_size random examples of the split (the rows are as long as the longest example)."""
        x, y = self.tensors(split)
        rows = torch.randint(len(x), (batch_size,), generator=generator)
        return x[rows].to(device), y[rows].to(device)

    def examples(self, split, block_size=None) -> list:
        name = self.split_name(split)
        seen = {}
        out = []
        for index, word in enumerate(self.words(split)):
            places = self.places.get(word) or [(self.source, -1)]
            k = seen.get(word, 0)
            seen[word] = k + 1
            document, offset = places[k % len(places)]
            out.append(Example(example_id(word), name, index, document, offset, word))
        return out

    def batches(self, split, block_size=None, batch_size=500):  # rows are as long as the longest example
        x, y = self.tensors(split)
        for first in range(0, len(x), batch_size):
            rows = range(first, min(first + batch_size, len(x)))
            yield rows, x[first:rows.stop], y[first:rows.stop]

    def heldout_in_train(self) -> int:
        return self.overlap()

    def overlap(self) -> int:
        """How many test examples also occur in the training set (names.txt repeats some names)."""
        train = set(self.train_words)
        return sum(word in train for word in self.test_words)

    def describe(self) -> dict:
        return {"examples": {"kind": self.kind, "train": len(self.train_words), "test": len(self.test_words),
                             "test_in_train": self.overlap(), "block_size": self.longest,
                             "boundary": self.boundary}}


def encode_examples(words, tokenizer, block_size: int, boundary: int):
    flat, lengths = encode_flat(words, tokenizer)
    rows = np.repeat(np.arange(len(words)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    x = np.full((len(words), block_size), boundary, dtype=np.int64)
    y = np.full((len(words), block_size), -1, dtype=np.int64)
    x[rows, cols + 1] = flat
    y[rows, cols] = flat
    y[np.arange(len(words)), lengths] = boundary
    return torch.from_numpy(x), torch.from_numpy(y)


def encode_flat(words, tokenizer):
    """(every word's token ids concatenated, each word's token count), as tokenizer.encode gives them. A
    char tokenizer encodes all words in one call (one token per character), unless special-token text
    occurs, which each word then handles."""
    if getattr(tokenizer, "kind", "") == "char" and words:
        joined = "".join(words)
        if not any(name in joined for name in tokenizer.special_tokens):
            return tokenizer.encode_array(joined), np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    ids = [tokenizer.encode(word) for word in words]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((i for word in ids for i in word), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def segment(documents, kind: str):
    """[(text, document, offset)] of every example: each non-blank line (stripped), or each paragraph."""
    out = []
    for name, text in documents:
        if kind == "lines":
            offset = 0
            for line in text.splitlines(keepends=True):
                word = line.strip()
                if word:
                    out.append((word, name, offset + line.index(word[0])))
                offset += len(line)
        else:
            start = 0
            for match in [*BLANK_LINE.finditer(text), None]:
                stop = match.start() if match else len(text)
                chunk = text[start:stop]
                body = chunk.strip("\r\n")
                if body.strip():
                    out.append((body, name, start + chunk.index(body)))
                start = match.end() if match else len(text)
    return out


def split_rows(n: int, seed: int):
    """(train rows, test rows) of n examples: a seeded permutation, its last min(1000, n // 10) rows held out
    (makemore's rule). Dataset versions freeze this split at import (data/versions.py)."""
    test_size = min(MAX_TEST, n // 10)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[:n - test_size], order[n - test_size:]


def examples_tokenizer(spec_value, kind: str, train_words, test_words):
    """A new tokenizer made from the examples: char takes every character of both splits (makemore's
    vocabulary), BPE trains on the train split; paragraphs get their boundary as a special token."""
    if spec_value.kind == "char" and kind == "lines":
        return spec_value.build(LINE_BOUNDARY + "".join(train_words) + "".join(test_words))
    specials = [PARAGRAPH_BOUNDARY] if kind == "paragraphs" else []
    return spec_value.build("\n".join(train_words) + "\n", "\n".join(test_words), special_tokens=specials)


def read_examples(spec: str, seed: int, kind: str = "lines", tokenizer="char") -> Examples:
    """The examples of a file or folder (or of the built-in `names`), split into train and test by seed.

    tokenizer is a spec (char, bpe:N, gpt2, a .json file) or a tokenizer object (a run's own)."""
    spec_value = None if isinstance(tokenizer, Tokenizer) else TokenizerSpec.parse(tokenizer)
    corpus = load_corpus(spec)
    text = join_documents(corpus.documents)
    found = segment(corpus.documents, kind)
    words = [w for w, _, _ in found]
    if len(words) < MIN_EXAMPLES:
        unit = "non-empty line(s)" if kind == "lines" else "paragraph(s)"
        raise UserError(f"{spec} has {len(words)} {unit}; example-per-row training needs at least {MIN_EXAMPLES}",
                        "give a file with one example per line (or paragraphs separated by blank lines)")
    places = {}
    for word, name, offset in found:
        places.setdefault(word, []).append((name, offset))
    train_rows, test_rows = split_rows(len(words), seed)
    train_words, test_words = [words[i] for i in train_rows], [words[i] for i in test_rows]
    if spec_value is not None:  # a new tokenizer, made from these examples
        tokenizer = examples_tokenizer(spec_value, kind, train_words, test_words)
    data_hash = hashlib.sha256(f"{kind}|{seed}|".encode() + text.encode("utf-8")).hexdigest()
    data = Examples(spec, tokenizer, train_words, test_words, data_hash, kind=kind, places=places,
                    skipped_files=corpus.skipped)
    data.boundary_id  # noqa: B018  (refuses a tokenizer without the boundary as one token, before training)
    return data
