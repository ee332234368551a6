"""A dataset version: a segmenter (lines, paragraphs, files or prompts) plus an ordered list of examples,
each with its split and weight, named by the hash of that content.

    vid = sha256("nanostack-version 1\n" + kind + "\n", then the examples' 32-byte sha256 digests, then
                 their splits (one byte each: 0 train, 1 test), then their weights (one byte each))

Equal content has an equal id however it was derived (git's tree semantics): two orders of the
same drops give one version. A version's table (examples.parquet) holds per example: row,
example_id (the data layer's: first 8 bytes of sha256(text), signed), sha256, split, weight (a repeat
count 0-255; test examples weigh 1), source, offset, text, and any signal columns it was imported
with (telemetry's prompt_nll_mean). train.txt/.json and test.txt/.json are the same examples materialized
for the trainer (nanostack/data/versions.py reads them without DuckDB).
"""
import binascii
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from nanostack.data.versions import read_manifest
from nanostack.dataengine.tables import read_parquet, write_parquet
from nanostack.errors import UserError
from nanostack.io import write_atomic, write_json

FORMAT = 1
CORE = ("example_id", "sha256", "split", "weight", "source", "offset", "text")
SPLITS = ("train", "test")


def digests(texts):
    """(sha256 hex strings, example ids as int64) of a sequence of texts."""
    blob = b"".join([hashlib.sha256(t.encode("utf-8")).digest() for t in texts])
    if not blob:
        return np.zeros(0, dtype=object), np.zeros(0, np.int64)
    raw = np.frombuffer(blob, dtype=np.uint8).reshape(-1, 32)
    ids = raw[:, :8].copy().view(">i8").ravel().astype(np.int64)
    text = binascii.hexlify(blob).decode("ascii")
    hexes = np.array([text[i:i + 64] for i in range(0, len(text), 64)], dtype=object)
    return hexes, ids


def new_table(texts, splits, weights, sources, offsets, extra=None) -> dict:
    """A version table from its columns (texts in version order)."""
    texts = np.array(list(texts), dtype=object)
    sha, ids = digests(texts)
    table = {"example_id": ids, "sha256": sha, "split": np.array(list(splits), dtype=object),
             "weight": np.asarray(weights, dtype=np.int64), "source": np.array(list(sources), dtype=object),
             "offset": np.asarray(offsets, dtype=np.int64), "text": texts}
    table.update(extra or {})
    return table


def take(table: dict, rows) -> dict:
    """The table's rows `rows` (a boolean mask or indices), every column."""
    return {k: v[rows] for k, v in table.items() if k != "row"}


def concat(a: dict, b: dict) -> dict:
    """Rows of a, then rows of b; a column only one of them has is filled with null in the other."""
    out = {}
    for name in dict.fromkeys([*a, *b]):
        if name == "row":
            continue
        parts = []
        for t, other in ((a, b), (b, a)):
            n = len(t["text"])
            if name in t:
                parts.append(t[name])
            else:
                kind = other[name].dtype
                parts.append(np.full(n, np.nan) if kind.kind == "f" else np.full(n, None, dtype=object))
        out[name] = np.concatenate(parts)
    return out


def version_id(kind: str, table: dict) -> str:
    digest = hashlib.sha256(f"nanostack-version {FORMAT}\n{kind}\n".encode())
    digest.update(binascii.unhexlify("".join(table["sha256"].tolist())))
    digest.update((table["split"] == "test").astype(np.uint8).tobytes())
    digest.update(np.asarray(table["weight"]).astype(np.uint8).tobytes())
    return digest.hexdigest()


def check_table(table: dict) -> None:
    splits = set(table["split"].tolist())
    if not splits <= set(SPLITS):
        raise UserError(f"a version's splits must be train or test, not {sorted(splits - set(SPLITS))}",
                        "fix the op")
    w = table["weight"]
    if len(w) and (w.min() < 0 or w.max() > 255):
        raise UserError("weights are repeat counts from 0 to 255", "lower --factor")
    test = table["split"] == "test"
    if (w[test] != 1).any():
        raise UserError("test examples always weigh 1", "upweight train examples only")


def write_version(store, kind: str, table: dict, manifest: dict) -> tuple:
    """Store the version (unless an equal one exists) and return (vid, created)."""
    check_table(table)
    vid = version_id(kind, table)
    final = store.version_path(vid)
    if (final / "manifest.json").is_file():
        return vid, False
    tmp = store.versions_dir / f".tmp-{vid[:16]}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        columns = {"row": np.arange(len(table["text"]), dtype=np.int64)}
        columns.update({k: table[k] for k in CORE})
        columns.update({k: v for k, v in table.items() if k not in CORE and k != "row"})
        write_parquet(tmp / "examples.parquet", columns, categorical=("split", "source"))
        materialize_into(tmp, table)
        split = table["split"]
        counts = {"examples": int(len(split)), "train": int((split == "train").sum()),
                  "test": int((split == "test").sum()),
                  "train_weighted": int(table["weight"][split == "train"].sum()),
                  "distinct": int(len(set(table["sha256"].tolist())))}
        write_json(tmp / "manifest.json", {"format": FORMAT, "vid": vid, "kind": kind, "counts": counts,
                                           "columns": list(columns), "created": round(time.time(), 3),
                                           **manifest})
        if final.exists():  # a half-written folder from a crash that never got its manifest
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return vid, True


def materialize_into(folder: Path, table: dict) -> None:
    """train.txt / test.txt (the split's texts one after another) and train.json / test.json (their lengths in
    characters, weights, sources and offsets), in version order: what the trainer reads, without DuckDB."""
    for split in SPLITS:
        mask = table["split"] == split
        texts = table["text"][mask].tolist()
        columns = {"length": [len(t) for t in texts], "weight": table["weight"][mask].tolist(),
                   "source": table["source"][mask].tolist(), "offset": table["offset"][mask].tolist()}
        tmp = folder / f"{split}.txt.tmp"
        with open(tmp, "w", encoding="utf-8", newline="") as f:  # newline="": no \n -> \r\n anywhere
            f.write("".join(texts))
        os.replace(tmp, folder / f"{split}.txt")
        write_atomic(folder / f"{split}.json", json.dumps(columns, ensure_ascii=False))


class Version:
    """One stored version: its manifest, and its table read on demand."""

    def __init__(self, store, vid: str, ref: str = ""):
        self.store = store
        self.vid = vid
        self.path = store.version_path(vid)
        self.manifest = read_manifest(self.path)
        self.ref = ref or vid[:12]
        self._table = None

    def __repr__(self):
        return f"Version({self.ref!r}, {self.vid[:12]})"

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def name(self) -> str:
        """The name ops on this version file their results under."""
        return self.ref.split("@")[0] if "@" in self.ref else self.manifest.get("name") or self.vid[:12]

    @property
    def parents(self) -> list:
        return list(self.manifest.get("parents", []))

    @property
    def counts(self) -> dict:
        return self.manifest["counts"]

    def table(self) -> dict:
        """Every column of examples.parquet, in version order (read once)."""
        if self._table is None:
            path = self.path / "examples.parquet"
            if not path.is_file():
                raise UserError(f"version {self.vid[:12]} has lost its examples.parquet",
                                "run `nanostack data verify`; restore the store from a backup")
            table = read_parquet(path, order="row")
            if len(table.get("row", [])) != self.counts["examples"]:
                raise UserError(f"version {self.vid[:12]}'s examples.parquet does not match its manifest",
                                "run `nanostack data verify`; restore the store from a backup")
            for name in ("split", "sha256", "source", "text"):
                table[name] = table[name].astype(object)
            self._table = table
        return self._table

    def texts(self, split=None) -> np.ndarray:
        table = self.table()
        return table["text"] if split is None else table["text"][table["split"] == split]

    def materialize(self) -> Path:
        """(Re)write train.txt/.json and test.txt/.json from the table."""
        materialize_into(self.path, self.table())
        return self.path
