"""Line-per-example data: each line of a file is one example (a name, a word, a command).

A model learns to generate more examples like them, one character at a time. Every example is
wrapped by the boundary token, the newline: the model reads "\\n" + example and must predict
example + "\\n", so it learns how examples start and when they end. Examples are padded to the
longest one; padded targets are -1, which the loss ignores.

The split is deterministic by seed: 1000 test examples, or 10% of them when there are fewer than
10,000, as makemore splits.
"""
import hashlib
from dataclasses import dataclass, field

import torch

from nanostack.data.sources import load_corpus
from nanostack.errors import UserError
from nanostack.tokenizer import CharTokenizer

BOUNDARY = "\n"
MAX_TEST = 1000


@dataclass
class Examples:
    source: str
    tokenizer: CharTokenizer
    train_words: list
    test_words: list
    data_hash: str
    _tensors: dict = field(default_factory=dict, repr=False)

    @property
    def block_size(self) -> int:
        """Longest example + the boundary token: the length of every (padded) sequence."""
        return max(map(len, self.train_words + self.test_words)) + 1

    @property
    def boundary_id(self) -> int:
        return int(self.tokenizer.encode(BOUNDARY)[0])

    def tensors(self, split: str):
        """(x, y) int64 tensors (n, block_size): x = boundary + example, y = example + boundary, padded.
        split is train, or test (also called val: the held-out split)."""
        split = "test" if split == "val" else split
        if split not in self._tensors:
            words = self.train_words if split == "train" else self.test_words
            self._tensors[split] = encode_examples(words, self.tokenizer, self.block_size, self.boundary_id)
        return self._tensors[split]

    mode = "lines"

    def batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator, device="cpu"):
        """batch_size random examples of the train or test ("val") split; block_size is the data's own."""
        x, y = self.tensors(split)
        rows = torch.randint(len(x), (batch_size,), generator=generator)
        return x[rows].to(device), y[rows].to(device)

    def describe(self) -> dict:
        return {"examples": {"train": len(self.train_words), "test": len(self.test_words),
                             "test_in_train": self.overlap(), "block_size": self.block_size}}

    def overlap(self) -> int:
        """How many test examples also occur in the training set (names.txt repeats some names)."""
        train = set(self.train_words)
        return sum(word in train for word in self.test_words)


def encode_examples(words, tokenizer, block_size: int, boundary: int):
    x = torch.full((len(words), block_size), boundary, dtype=torch.long)
    y = torch.full((len(words), block_size), -1, dtype=torch.long)
    for i, word in enumerate(words):
        ids = torch.as_tensor(tokenizer.encode(word), dtype=torch.long)
        x[i, 1:1 + len(ids)] = ids
        y[i, :len(ids)] = ids
        y[i, len(ids)] = boundary
    return x, y


def read_examples(spec: str, seed: int) -> Examples:
    """The examples of a file (or of the built-in `names`), split into train and test by seed."""
    corpus = load_corpus(spec)
    text = "".join(t if t.endswith("\n") else t + "\n" for _, t in corpus.documents)
    words = [line.strip() for line in text.splitlines()]
    words = [w for w in words if w]
    if len(words) < 10:
        raise UserError(f"{spec} has {len(words)} non-empty line(s); line-per-example training needs at least 10",
                        "give a file with one example per line")
    test_size = min(MAX_TEST, len(words) // 10)
    order = torch.randperm(len(words), generator=torch.Generator().manual_seed(seed)).tolist()
    tokenizer = CharTokenizer.from_text(BOUNDARY + "".join(words))
    data_hash = hashlib.sha256(f"lines|{seed}|".encode() + text.encode("utf-8")).hexdigest()
    return Examples(spec, tokenizer, [words[i] for i in order[:-test_size]], [words[i] for i in order[-test_size:]],
                    data_hash)
