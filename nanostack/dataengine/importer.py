"""`nanostack data import PATH`: a file, a folder, or the server's telemetry Parquet files become a root
dataset version.

Files are stored by content hash (objects/), cut into examples by the data layer's own segmenter
(a line, a blank-line paragraph, or with --examples files a whole file each), and split by the data
layer's rule (a seeded permutation, 1000 or 10% held out), frozen from here on: every version
derived from this one inherits it. A folder skips files that are binary (a NUL in the first 8,000
bytes, as git decides) or not UTF-8, and lists each with its kind and byte offset; a single such file
is an error naming the offset. A byte-order mark at the start of a file is dropped, as the data layer
drops it, and noted for the report.

Telemetry (`nanostack serve --telemetry DIR` writes DIR/telemetry-*.parquet) imports one example per
request: the prompt, with the server's prompt_nll_mean, ts, request_id, endpoint and run kept as
signal columns, queryable by `--where`.
"""
import hashlib
import os
from pathlib import Path

import numpy as np

from nanostack.data.examples import MIN_EXAMPLES, segment, split_rows
from nanostack.dataengine.store import canonical, check_name, sha256_text
from nanostack.dataengine.tables import read_parquet
from nanostack.dataengine.text import BOM, decode_problem
from nanostack.dataengine.version import new_table, write_version
from nanostack.errors import UserError

KINDS = ("lines", "paragraphs", "files")
TELEMETRY_GLOB = "telemetry-*.parquet"
TELEMETRY_SIGNALS = {"prompt_nll_mean": "prompt_nll_mean", "ts": "ts", "request_id": "request_id",
                     "endpoint": "endpoint", "run": "served_by"}
OP_VERSION = 1


def is_telemetry(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".parquet") or (path.is_dir() and any(path.glob(TELEMETRY_GLOB)))


def read_documents(path: Path):
    """([(name, text, raw bytes)], skipped, notes) of a file or a folder: skipped lists the files that are
    not text ({file, kind, offset}); notes the byte-order marks dropped from the start of a file, as the
    data layer drops them (a BOM says how a file is encoded; it is not text)."""
    if path.is_file():
        raw = path.read_bytes()
        problem = decode_problem(raw)
        if problem:
            kind, offset = problem
            what = "binary (a NUL byte)" if kind == "binary" else "not UTF-8 text"
            raise UserError(f"{path} is {what} at byte offset {offset}",
                            "convert it to UTF-8 text, or import the folder around it (bad files are skipped)")
        text, notes = _without_bom(path.name, raw.decode("utf-8"))
        return [(path.name, text, raw)], [], notes
    documents, skipped, notes = [], [], []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            file = Path(dirpath) / filename
            name = file.relative_to(path).as_posix().encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            try:
                raw = file.read_bytes() if file.is_file() else None
            except OSError:
                skipped.append({"file": name, "kind": "unreadable", "offset": 0})
                continue
            if raw is None:
                continue
            problem = decode_problem(raw)
            if problem:
                skipped.append({"file": name, "kind": problem[0], "offset": problem[1]})
                continue
            text, found = _without_bom(name, raw.decode("utf-8"))
            notes.extend(found)
            documents.append((name, text, raw))
    return documents, skipped, notes


def _without_bom(name: str, text: str):
    if text.startswith(BOM):
        return text[1:], [{"file": name, "kind": "bom", "offset": 0}]
    return text, []


def cut(documents, kind: str):
    """[(text, source, offset)]: the data layer's lines or paragraphs, or each non-blank file whole."""
    if kind == "files":
        return [(text, name, 0) for name, text, _ in documents if text.strip()]
    return segment([(name, text) for name, text, _ in documents], kind)


def import_path(store, path, kind: str = "lines", name=None, seed: int = 1337):
    """Import PATH as a root version. Returns (vid, created, manifest fields) — created is False when the
    same files were imported the same way before (then nothing is written)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist", "give a text file, a folder, or a telemetry folder")
    name = check_name(name or path.resolve().stem or "data")
    if kind not in KINDS:
        raise UserError(f"unknown --examples {kind!r}", f"use one of: {', '.join(KINDS)}")
    if is_telemetry(path):
        found, table_extra, blobs, skipped, kind = read_telemetry(path)
        notes = []
    else:
        documents, skipped, notes = read_documents(path)
        found = cut(documents, kind)
        blobs = [(n, raw) for n, _, raw in documents]
        table_extra = {}
    sources = [{"name": n, "object": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)} for n, raw in blobs]
    if len(found) < MIN_EXAMPLES:
        bad = f" ({len(skipped)} file(s) skipped as binary or not UTF-8)" if skipped else ""
        raise UserError(f"{path} has {len(found)} example(s) as {kind}{bad}; a version needs at least {MIN_EXAMPLES}",
                        "give more text, or another --examples mode")
    train_rows, test_rows = split_rows(len(found), seed)
    splits = np.full(len(found), "train", dtype=object)
    splits[test_rows] = "test"
    table = new_table([t for t, _, _ in found], splits, np.ones(len(found), dtype=np.int64),
                      [s for _, s, _ in found], [o for _, _, o in found], table_extra)
    op = {"op": "import", "version": OP_VERSION, "examples": kind, "seed": seed, "path": str(path.resolve()),
          "objects": [s["object"] for s in sources]}
    manifest = {"name": name, "parents": [], "op": op, "sources": sources,
                "skipped": skipped, "encoding": notes, "split_rule": f"seeded permutation (seed {seed}), min(1000, n//10) held out",
                "dkey": sha256_text(canonical({k: v for k, v in op.items() if k != "path"}))}
    vid, created = write_version(store, kind, table, manifest)
    for (_, raw), source in zip(blobs, sources):  # kept once the version exists (a refused import leaves nothing)
        store.put_object(raw, source["object"])
    return vid, created, manifest


def read_telemetry(path: Path):
    """Prompts of the server's telemetry files (one example per request), with their signals:
    (examples, signal columns, [(file name, bytes)], skipped, kind)."""
    files = [path] if path.is_file() else sorted(path.glob(TELEMETRY_GLOB))
    found, extra, blobs = [], {k: [] for k in TELEMETRY_SIGNALS.values()}, []
    for file in files:
        blobs.append((file.name, file.read_bytes()))
        columns = read_parquet(file)
        if "prompt" not in columns:
            raise UserError(f"{file} has no prompt column; it is not the server's telemetry",
                            "give the folder that `nanostack serve --telemetry DIR` writes")
        n = len(columns["prompt"])
        for i, prompt in enumerate(columns["prompt"].tolist()):
            if not isinstance(prompt, str) or not prompt.strip():
                continue
            found.append((prompt, file.name, i))
            for key, column in TELEMETRY_SIGNALS.items():
                values = columns.get(key)
                extra[column].append(values[i] if values is not None and i < n else None)
    table_extra = {"prompt_nll_mean": np.array([np.nan if v is None else float(v) for v in extra["prompt_nll_mean"]]),
                   "ts": np.array([np.nan if v is None else float(v) for v in extra["ts"]]),
                   **{k: np.array([None if v is None else str(v) for v in extra[k]], dtype=object)
                      for k in ("request_id", "endpoint", "served_by")}}
    return found, table_extra, blobs, [], "prompts"
