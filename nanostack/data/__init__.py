"""Data: built-in corpora and user text -> cached token shards (or line examples) -> random batches."""
from nanostack.data.examples import Examples, read_examples
from nanostack.data.loader import check_split_size, get_batch
from nanostack.data.shards import Shards, prepare_shards
from nanostack.data.sources import BUILTINS, load_corpus
from nanostack.errors import UserError

LINE_DATA = ("names",)  # built-in corpora that are one example per line


def data_mode(data: str, examples: str) -> str:
    """lines or stream: what `--examples auto` means for this data."""
    return examples if examples != "auto" else ("lines" if data in LINE_DATA else "stream")


def open_training_data(data: str, tokenizer: str, examples: str, seed: int, log=print):
    """Shards (stream) or Examples (lines); both give batch(split, batch_size, block_size, generator, device)."""
    if data_mode(data, examples) == "lines":
        if tokenizer != "char":
            raise UserError(f"line-per-example data is tokenized by character, not {tokenizer}",
                            "drop --tokenizer, or use --examples stream")
        return read_examples(data, seed)
    return prepare_shards(data, tokenizer, log=log)


__all__ = ["BUILTINS", "Examples", "LINE_DATA", "Shards", "check_split_size", "data_mode", "get_batch",
           "load_corpus", "open_training_data", "prepare_shards", "read_examples"]
