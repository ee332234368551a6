"""Curation: ops that make a new version from a version, with lineage, cached by what they were given.

Each op is a pure function from the parent's table to a new table. Its derivation key,
sha256(parent vid, op, canonical params, op version, hashes of input files), is looked up first: the
same op on the same inputs is not run again (as HF datasets' fingerprints and DVC's run cache do),
and since a version's id is its content, two routes to the same examples end at one version.

Ops never touch the test split unless asked (edit_test): the root's test split stays the pinned
eval set, so before/after numbers compare. A test edit without it is a UserError, and nothing is
written. Ops file their result under the parent's name (NAME@latest moves, NAME@N is added).

    dedupe   drop copies (exact, normalized or near), keeping test members (or the first, the longest)
    drop     rows by id (a file of ids), by SQL condition, or the worst fraction by a score's loss
    filter   keep the train rows where an SQL condition holds
    upweight repeat the highest-loss train rows (weight x factor, at most 255)
    relabel  edit or drop rows by id from a JSONL file ({"id", "text"} or {"id", "drop": true})
    append   add the examples of a file or folder (to train, or split by content hash)
"""
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanostack.dataengine import dups
from nanostack.dataengine.importer import cut, read_documents, read_telemetry
from nanostack.dataengine.store import canonical, check_name, sha256_file, sha256_text
from nanostack.dataengine.tables import read_parquet, where_rows
from nanostack.dataengine.version import Version, concat, new_table, take, write_version
from nanostack.errors import UserError

OP_VERSIONS = {"dedupe": 1, "drop": 1, "filter": 1, "upweight": 1, "relabel": 1, "append": 1}
DEDUPE_MODES = ("exact", "normalized", "near")
KEEP = ("test", "first", "longest")
TEST_EDIT_HINT = "ops leave the test split alone so results stay comparable; add --edit-test to change it anyway"


@dataclass
class OpResult:
    version: Version
    parent: Version
    cached: bool
    note: str = ""

    @property
    def before(self) -> int:
        return self.parent.counts["examples"]

    @property
    def after(self) -> int:
        return self.version.counts["examples"]

    def __str__(self):
        cached = " (cached: the same op ran before)" if self.cached else ""
        note = f"; {self.note}" if self.note else ""
        return (f"{self.version.ref} = {self.version.vid[:12]}: {self.before:,} -> {self.after:,} examples "
                f"(train {self.parent.counts['train']:,} -> {self.version.counts['train']:,}, "
                f"test {self.parent.counts['test']:,} -> {self.version.counts['test']:,}){cached}{note}")


def derive(store, parent: Version, op: str, params: dict, make, input_files=(), name=None, edit_test=False) -> OpResult:
    """Run `make(table) -> (table, note)` on parent's table unless the same derivation exists. input_files
    (paths of an ids or fixes file, or bytes) count in the derivation key by content, and are kept as objects
    once it ran."""
    params = {**params, "edit_test": bool(edit_test)}
    blobs = [item if isinstance(item, bytes) else Path(item).read_bytes() for item in input_files]
    inputs = [hashlib.sha256(blob).hexdigest() for blob in blobs]
    dkey = sha256_text(canonical({"parents": [parent.vid], "op": op, "params": params,
                                  "op_version": OP_VERSIONS[op], "inputs": list(inputs)}))
    name = check_name(name or parent.name)
    with store.lock():
        vid = store.derivation(dkey)
        cached = vid is not None
        note = ""
        if not cached:
            before = parent.table()
            table, note = make(before)
            if not edit_test:
                check_test_unchanged(before, table)
            vid, _ = write_version(store, parent.kind, table,
                                   {"name": name, "parents": [parent.vid], "dkey": dkey, "note": note,
                                    "skipped": parent.manifest.get("skipped", []),  # what import found
                                    "encoding": parent.manifest.get("encoding", []),
                                    "op": {"op": op, "op_version": OP_VERSIONS[op], **params,
                                           "inputs": list(inputs)}})
            for blob in blobs:
                store.put_object(blob)
            store.record_derivation(dkey, vid, {"op": op, **params, "parent": parent.vid, "note": note})
        ref = store.advance(name, vid)
    child = Version(store, vid, ref)
    if cached:
        note = store_note(store, dkey) or child.manifest.get("note", "")
    return OpResult(child, parent, cached, note)


def store_note(store, dkey):
    try:
        return json.loads((store.home / "derivations" / dkey).read_text(encoding="utf-8"))["op"].get("note", "")
    except (OSError, ValueError, KeyError):
        return ""


def check_test_unchanged(before: dict, after: dict) -> None:
    old = before["sha256"][before["split"] == "test"]
    new = after["sha256"][after["split"] == "test"]
    if len(old) != len(new) or (old != new).any():
        raise UserError(f"this op would change the test split ({len(old):,} -> {len(new):,} examples)",
                        TEST_EDIT_HINT)


# ---- dedupe -----------------------------------------------------------------------------------------

def dedupe_rows(table: dict, mode: str, keep: str = "test", threshold: float = 0.8, edit_test=False):
    """(keep mask, note): which rows survive deduplication."""
    if mode not in DEDUPE_MODES:
        raise UserError(f"unknown dedupe mode {mode!r}", f"use one of: {', '.join(DEDUPE_MODES)}")
    if keep not in KEEP:
        raise UserError(f"unknown --keep {keep!r}", f"use one of: {', '.join(KEEP)}")
    texts, splits = table["text"], table["split"]
    note = ""
    if mode == "exact":
        labels = dups.exact_labels(texts)
    elif mode == "normalized":
        labels = dups.normalized_labels(texts)
    elif dups.is_short(texts):
        labels = dups.exact_labels(texts)
        note = "short lines: near duplicates (edit distance 1) are reported, not dropped; exact copies dropped"
    else:
        labels = dups.near_labels(list(texts), threshold).labels
    n = len(labels)
    rows = np.arange(n)
    train, test = splits == "train", splits == "test"
    if keep == "test":
        has_test = np.isin(labels, labels[test])
        train_rows = rows[train]
        _, first = np.unique(labels[train_rows], return_index=True)
        first_train = np.zeros(n, dtype=bool)
        first_train[train_rows[first]] = True
        survivor = test | (train & ~has_test & first_train)
    else:
        if keep == "first":
            chosen = rows
        else:  # longest: order rows by (cluster, -length, row) and keep each cluster's first
            lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
            chosen = rows[np.lexsort((rows, -lengths, labels))]
        _, first = np.unique(labels[chosen], return_index=True)
        survivor = np.zeros(n, dtype=bool)
        survivor[chosen[first]] = True
        if not edit_test:
            survivor |= test
    return survivor, note


def dedupe(store, version, mode="exact", keep="test", threshold=0.8, edit_test=False, name=None) -> OpResult:
    def make(table):
        survivor, note = dedupe_rows(table, mode, keep, threshold, edit_test)
        dropped = int((~survivor).sum())
        return take(table, survivor), (note + "; " if note else "") + f"{dropped:,} copies dropped"
    params = {"mode": mode, "keep": keep, **({"threshold": threshold} if mode == "near" else {})}
    return derive(store, version, "dedupe", params, make, name=name, edit_test=edit_test)


# ---- drop / filter --------------------------------------------------------------------------------------

def read_ids(path) -> list:
    """Example ids from a file: one per line (decimal), or JSONL objects with an "id"; # comments."""
    ids = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"cannot read ids file {path} ({e.strerror})", "check the path") from None
    except UnicodeDecodeError:
        raise UserError(f"ids file {path} is not UTF-8 text", "give one example id per line") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            value = json.loads(line)
            value = value["id"] if isinstance(value, dict) else value
            ids.append(int(value))
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}:{number} is not an example id ({line[:40]!r})",
                            "give one id per line, or JSONL objects with an \"id\"") from None
    return ids


def rows_of_ids(table: dict, ids, what: str) -> np.ndarray:
    """Boolean mask of rows whose example id is in ids; unknown ids are an error."""
    ids = np.asarray(sorted(set(ids)), dtype=np.int64)
    known = np.isin(ids, table["example_id"])
    if not known.all():
        missing = ids[~known]
        raise UserError(f"{what} names {len(missing)} id(s) that are not in this version (e.g. {missing[0]})",
                        "take ids from this version (`nanostack engine worst`, `review`, or its examples.parquet)")
    return np.isin(table["example_id"], ids)


def spare_test(table: dict, hit: np.ndarray, ids) -> np.ndarray:
    """hit without its test rows; an error if some of the ids name test rows only (the op would change
    the test split, or do nothing with them)."""
    test = table["split"] == "test"
    in_train = set(table["example_id"][hit & ~test].tolist())
    test_only = {int(i) for i in table["example_id"][hit & test].tolist()} - in_train
    if test_only:
        raise UserError(f"{len(test_only)} of the ids name test examples only (e.g. {min(test_only)})",
                        TEST_EDIT_HINT)
    return hit & ~test


def query_tables(version, table: dict, score=None) -> dict:
    """The tables a --where sees: `examples` (the version's columns, its report's signals, and a score's
    nll_sum, tokens, nll_mean when one is given)."""
    columns = dict(table)
    columns.setdefault("row", np.arange(len(table["text"]), dtype=np.int64))
    signals = version.path / "signals.parquet"
    if signals.is_file():
        extra = read_parquet(signals, order="row")
        if len(extra.get("row", [])) == len(table["text"]):
            columns.update({k: v for k, v in extra.items() if k not in columns})
    if score is not None:
        columns.update(score.losses_for(version, table))
    return {"examples": columns}


def worst_rows(table: dict, losses: dict, fraction_or_count: str) -> np.ndarray:
    """Boolean mask: the train rows (of 2 tokens or more) with the highest mean loss per token."""
    train = (table["split"] == "train") & (losses["tokens"] >= 2) & np.isfinite(losses["nll_mean"])
    n = amount(fraction_or_count, int((table["split"] == "train").sum()))
    candidates = np.flatnonzero(train)
    order = candidates[np.argsort(-losses["nll_mean"][candidates], kind="stable")]
    mask = np.zeros(len(train), dtype=bool)
    mask[order[:n]] = True
    return mask


def amount(text, total: int) -> int:
    """'5%' of total (rounded up) or a count."""
    text = str(text).strip()
    try:
        if text.endswith("%"):
            value = float(text[:-1])
            if not 0 <= value <= 100:
                raise ValueError
            return math.ceil(value / 100 * total)
        value = int(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise UserError(f"{text!r} is neither a percentage (0-100%) nor a count", "e.g. 5% or 200") from None


def drop(store, version, ids=None, ids_file=None, where=None, score=None, worst=None, edit_test=False,
         name=None) -> OpResult:
    """Drop rows named by ids (or an ids file), by an SQL condition, or the `worst` fraction by a score."""
    given = [x is not None for x in (ids, ids_file, where, worst)]
    if sum(given) != 1:
        raise UserError("drop takes one of --ids, --where or --worst", "give exactly one")
    inputs, params = [], {}
    if ids_file is not None:
        ids = read_ids(ids_file)
        inputs.append(ids_file)
    if ids is not None:
        ids = [int(i) for i in ids]
        params["ids"] = sorted(set(ids)) if ids_file is None else f"{len(set(ids))} ids"
    if where is not None:
        params["where"] = where
    if worst is not None:
        if score is None:
            raise UserError("--worst needs a score", "give --score S (from `nanostack engine score`)")
        params["worst"] = str(worst)
    if score is not None:
        params["score"] = score.score_id

    def make(table):
        if ids is not None:
            hit = rows_of_ids(table, ids, "the ids")
            if not edit_test:
                hit = spare_test(table, hit, ids)
            return take(table, ~hit), f"{int(hit.sum()):,} rows dropped by id"
        if where is not None:
            hit = np.zeros(len(table["text"]), dtype=bool)
            hit[where_rows(where, query_tables(version, table, score))] = True
        else:
            hit = worst_rows(table, score.losses_for(version, table), worst)
        spared = int((hit & (table["split"] == "test")).sum())
        if not edit_test:
            hit &= table["split"] != "test"
        note = f"{int(hit.sum()):,} rows dropped" + (f"; {spared:,} test rows matched and were kept (--edit-test to "
                                                     "drop them)" if spared and not edit_test else "")
        return take(table, ~hit), note
    return derive(store, version, "drop", params, make, inputs, name=name, edit_test=edit_test)


def filter_rows(store, version, where: str, score=None, edit_test=False, name=None) -> OpResult:
    """Keep the rows where the SQL condition holds (test rows stay unless edit_test)."""
    params = {"where": where, **({"score": score.score_id} if score is not None else {})}

    def make(table):
        keep = np.zeros(len(table["text"]), dtype=bool)
        keep[where_rows(where, query_tables(version, table, score))] = True
        spared = int((~keep & (table["split"] == "test")).sum())
        if not edit_test:
            keep |= table["split"] == "test"
        return take(table, keep), f"{int((~keep).sum()):,} rows filtered out" + (
            f"; {spared:,} test rows failed the condition and were kept" if spared and not edit_test else "")
    return derive(store, version, "filter", params, make, name=name, edit_test=edit_test)


# ---- upweight ---------------------------------------------------------------------------------------

def upweight(store, version, score, top="5%", factor=2, name=None) -> OpResult:
    """Multiply the weight of the highest-loss train rows by factor (materialization repeats them)."""
    if not isinstance(factor, int) or factor < 1:
        raise UserError(f"--factor must be a whole number >= 1, got {factor!r}", "e.g. --factor 2")

    def make(table):
        hit = worst_rows(table, score.losses_for(version, table), top)
        out = dict(table)
        out["weight"] = np.where(hit, np.minimum(table["weight"] * factor, 255), table["weight"])
        return out, f"{int(hit.sum()):,} train rows weigh x{factor}"
    return derive(store, version, "upweight", {"score": score.score_id, "top": str(top), "factor": factor}, make,
                  name=name)


# ---- relabel --------------------------------------------------------------------------------------------

def read_fixes(path) -> list:
    """[(id, new text or None to drop)] from a JSONL file."""
    fixes = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"cannot read fixes file {path} ({e.strerror})", "check the path") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            example = int(record["id"])
            if record.get("drop"):
                fixes.append((example, None))
            elif isinstance(record.get("text"), str):
                fixes.append((example, record["text"]))
            else:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}:{number} is not a fix", 'each line is {"id": ID, "text": "new text"} or '
                            '{"id": ID, "drop": true}') from None
    return fixes


def relabel(store, version, fixes_file, edit_test=False, name=None) -> OpResult:
    fixes = read_fixes(fixes_file)
    fixes_hash = sha256_file(fixes_file)

    def make(table):
        by_id = {}
        for example, text in fixes:
            by_id[example] = text
        hit = rows_of_ids(table, by_id, f"fixes file {fixes_file}")
        texts = table["text"]
        changed = np.array([hit[r] and by_id[table["example_id"][r]] != texts[r] for r in range(len(texts))],
                           dtype=bool)
        if not edit_test:  # a fix of an id found only in test changes the test split
            changed = spare_test(table, changed, by_id)
        dropped = changed & np.array([by_id.get(i, "") is None for i in table["example_id"].tolist()])
        edited = changed & ~dropped
        new_texts = texts.copy()
        for r in np.flatnonzero(edited):
            new_texts[r] = by_id[table["example_id"][r]]
        out = dict(table)
        renamed = new_table(new_texts[edited], table["split"][edited], table["weight"][edited],
                            [f"relabel:{fixes_hash[:12]}"] * int(edited.sum()), table["offset"][edited])
        for key in ("example_id", "sha256", "text", "source"):
            column = out[key].copy()
            column[edited] = renamed[key]
            out[key] = column
        return take(out, ~dropped), f"{int(edited.sum()):,} rows edited, {int(dropped.sum()):,} dropped"
    return derive(store, version, "relabel", {"fixes": f"{len(fixes)} fixes"}, make, [fixes_file], name=name,
                  edit_test=edit_test)


# ---- append ---------------------------------------------------------------------------------------------

APPEND_SPLITS = ("train", "hash")


def append(store, version, path, split="train", edit_test=False, name=None) -> OpResult:
    """Add the examples of a file, folder or telemetry folder, cut as the version's examples are: all to
    train, or split by content hash (example id mod 10 == 0 goes to test, which needs edit_test)."""
    if split not in APPEND_SPLITS:
        raise UserError(f"unknown --split {split!r}", f"use one of: {', '.join(APPEND_SPLITS)}")
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist", "give a text file, a folder, or a telemetry folder")
    if version.kind == "prompts":
        found, extra, files, _, _ = read_telemetry(path)
        blobs = [raw for _, raw in files]
    else:
        documents, _, _ = read_documents(path)
        found = cut(documents, version.kind)
        blobs = [raw for _, _, raw in documents]
        extra = {}

    def make(table):
        added = new_table([t for t, _, _ in found], ["train"] * len(found), np.ones(len(found), dtype=np.int64),
                          [s for _, s, _ in found], [o for _, _, o in found], extra)
        if split == "hash":
            added["split"] = np.where(added["example_id"] % 10 == 0, "test", "train").astype(object)
        return concat(table, added), f"{len(found):,} examples added ({int((added['split'] == 'test').sum())} to test)"
    return derive(store, version, "append", {"split": split}, make, blobs, name=name, edit_test=edit_test)
