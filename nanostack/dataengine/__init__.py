"""The data engine: dataset versions with lineage, a data report, duplicates and leaks, per-example losses
from trained runs, curation ops, and the loop that retrains on the curated data (see api.py).

A layer above train: it imports data, models, run, loss and train, and nothing imports it but the
CLI. Tables are Parquet files and manifests are JSON, so DuckDB, pandas, Polars or Spark read them as
they are; DuckDB (the `engine` extra) is the embedded query engine. Names are imported when first
used, so `nanostack --help` (which registers the commands) loads neither torch nor DuckDB.
"""
from importlib import import_module

__all__ = ["DatasetVersion", "Engine", "ScoreView", "open_engine"]


def __getattr__(name):
    if name not in __all__ and name != "api":
        raise AttributeError(f"module 'nanostack.dataengine' has no attribute {name!r}")
    api = import_module("nanostack.dataengine.api")
    return api if name == "api" else getattr(api, name)
