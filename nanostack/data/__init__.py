"""Data: built-in corpora and user text -> cached token shards -> random training batches."""
from nanostack.data.loader import check_split_size, get_batch
from nanostack.data.shards import Shards, prepare_shards
from nanostack.data.sources import BUILTINS, load_corpus

__all__ = ["BUILTINS", "Shards", "check_split_size", "get_batch", "load_corpus", "prepare_shards"]
