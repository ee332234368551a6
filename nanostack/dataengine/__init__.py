"""The data engine: dataset versions with lineage, a data report, duplicates and leaks, per-example losses
from trained runs, curation ops, and the loop that retrains on the curated data (see api.py).

A layer above train: it imports data, models, run, loss and train, and nothing imports it but the
CLI. Tables are Parquet files and manifests are JSON, so DuckDB, pandas, Polars or Spark read them as
they are; DuckDB (the `engine` extra) is the embedded query engine.
"""
from nanostack.dataengine.api import DatasetVersion, Engine, ScoreView, open_engine

__all__ = ["DatasetVersion", "Engine", "ScoreView", "open_engine"]
