"""open_dataset: the Dataset a `--data` / `--examples` setting names, tokenized as asked."""
from nanostack.data.conversations import read_conversations
from nanostack.data.dataset import Dataset
from nanostack.data.examples import read_examples
from nanostack.data.shards import prepare_shards
from nanostack.data.versions import is_version_ref, open_version
from nanostack.errors import UserError

LINE_DATA = ("names",)  # built-in corpora that are one example per line
EXAMPLE_KINDS = ("stream", "lines", "paragraphs", "chat")


def data_kind(data: str, examples: str) -> str:
    """stream, lines, paragraphs or chat: what `--examples auto` means for this data."""
    if examples == "auto":
        return "lines" if data in LINE_DATA else "stream"
    if examples not in EXAMPLE_KINDS:
        raise UserError(f"unknown examples mode {examples!r}", f"use auto, {', '.join(EXAMPLE_KINDS)}")
    return examples


def open_dataset(data: str, tokenizer="char", examples: str = "auto", seed: int = 1337, log=print,
                 expect_hash=None, reuse=None) -> Dataset:
    """The dataset `data` cut into examples as `examples` says, tokenized by `tokenizer` (a spec, or a
    tokenizer object: a run's own). With expect_hash (a run's recorded data hash), other data is refused;
    reuse names the shard folder a run recorded, to skip tokenizing the same data again. A dataset version
    (NAME@TAG, a version id, a version folder: see versions.py) is an example-per-row dataset of its own kind."""
    if is_version_ref(data):  # NAME@TAG, a version id or a version folder: the data engine's versions
        return open_version(data, tokenizer, expect_hash=expect_hash)
    kind = data_kind(data, examples)
    if kind == "stream":
        return prepare_shards(data, tokenizer, log=log, expect_hash=expect_hash, reuse=reuse)
    if kind == "chat":
        dataset = read_conversations(data, seed, tokenizer)
    else:
        dataset = read_examples(data, seed, kind, tokenizer)
    if expect_hash is not None and dataset.data_hash != expect_hash:
        raise UserError(f"the data {data} has changed since this run started (its content hash differs)",
                        "use the data it trained on, or train a new run on the new data")
    return dataset
