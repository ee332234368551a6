"""Data: built-in corpora and user text -> a Dataset (token shards, one example per line or
paragraph, or conversations with a loss mask) -> random batches and exact passes. See dataset.py for
the interface.

Names are imported when first used, so reading a corpus or a setting does not load torch.
"""
from importlib import import_module

_WHERE = {"Conversations": "conversations", "read_conversations": "conversations", "Dataset": "dataset", "Example": "dataset", "example_id": "dataset", "Examples": "examples",
          "read_examples": "examples", "get_batch": "loader", "Shards": "shards", "prepare_shards": "shards",
          "BUILTINS": "sources", "Corpus": "sources", "load_corpus": "sources",
          "LINE_DATA": "open", "EXAMPLE_KINDS": "open", "data_kind": "open", "open_dataset": "open"}


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'nanostack.data' has no attribute {name!r}")
    return getattr(import_module(f"nanostack.data.{_WHERE[name]}"), name)


__all__ = sorted(_WHERE)
