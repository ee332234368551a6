"""Dataset: the one interface every kind of training data gives its readers.

A dataset is a text cut into examples and tokenized, with a train split and a held-out split.
Two implementations: a stream of tokens (shards.py: one long text, read in windows) and one
example per line or per paragraph (examples.py: padded rows). Readers never ask which kind they
hold. They get:

- `batch(...)`: random training batches from a generator (the trainer's data order);
- `examples(split, block_size)` and `batches(split, block_size)`: an exact pass over a whole split, every
  example once, in order, each with a stable id and its place in the source, and tensors whose
  rows line up with those examples (so per-example losses can be joined to them later);
- `block_size(requested)`: the context length the data needs or allows, checked here once;
- `describe()`: what a run folder records about its data, and `data_hash`, which `--resume`,
  `eval` and every later reader check before trusting that the ids still mean the same text.

The dataset knows no model and no run folder.
"""
import hashlib
from dataclasses import dataclass

HELDOUT_NAMES = ("val", "test")  # the held-out split answers to both names


@dataclass(frozen=True)
class Example:
    id: int        # stable: the first 8 bytes of sha256(text) as a signed int64; same text, same id
    split: str     # "train", or the held-out split's name ("val" for streams, "test" for examples)
    index: int     # its row in the split's exact pass
    source: str    # the document it comes from
    offset: int    # where it starts there: a character offset (lines, paragraphs) or a token offset (windows)
    text: str


def example_id(text) -> int:
    """A stable id of an example's content: the same text has the same id in any dataset version."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big", signed=True)


class Dataset:
    kind = ""                 # how the text is cut into examples: stream, lines or paragraphs
    heldout = "val"           # the held-out split's own name
    boundary = None           # the token text that wraps every example (None: a stream has no examples ends)
    source: str
    tokenizer: object
    data_hash: str

    def split_name(self, split: str) -> str:
        """train, or this dataset's name for its held-out split (val and test both mean it)."""
        if split == "train":
            return "train"
        if split in HELDOUT_NAMES:
            return self.heldout
        raise ValueError(f"unknown split {split!r}")

    def block_size(self, requested=None, log=print) -> int:
        raise NotImplementedError

    def batch(self, split, batch_size, block_size, generator, device="cpu"):
        """(x, y) int64 tensors (batch_size, T): random rows of the split, from generator alone."""
        raise NotImplementedError

    def examples(self, split, block_size) -> list:
        """Every Example of the split, in the order of the exact pass."""
        raise NotImplementedError

    def batches(self, split, block_size, batch_size=64):
        """Yield (rows, x, y) over the whole split: rows is the range of examples(split, block_size) the
        batch holds; targets of -1 are padding."""
        raise NotImplementedError

    def unit(self, block_size) -> str:
        """What one example of the exact pass is, in words (for reports)."""
        return "examples"

    masks_targets = False  # True where some targets are -1 (learned from nothing), so a batch can hold none
    skipped = ()  # files of a data folder that were left out (binary, non-UTF-8, unreadable), to tell the user

    def heldout_in_train(self):
        """How many held-out examples also occur in train (None where that is not measured)."""
        return None

    def describe(self) -> dict:
        raise NotImplementedError
