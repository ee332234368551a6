"""Looking at the store and keeping it sound: list, log (lineage), diff, tag, verify and gc.

verify rehashes every object and recomputes every version's id from its examples, so a changed byte
anywhere is found; gc keeps what refs reach (versions, their ancestors, the files they came from,
their scores) and removes the rest, after listing it with --dry-run.
"""
import json
from collections import Counter

import numpy as np

from nanostack.data.versions import read_manifest
from nanostack.dataengine.store import sha256_file
from nanostack.dataengine.version import Version, digests, version_id
from nanostack.errors import UserError
from nanostack.io import write_json

RESERVED_TAGS = ("latest",)


def list_versions(store) -> list:
    """[{ref(s), vid, kind, counts, op, created}] of every version, newest first."""
    names = {}
    for ref, vid in store.refs().items():
        names.setdefault(vid, []).append(ref)
    out = []
    for vid in store.version_ids():
        try:
            manifest = read_manifest(store.version_path(vid))
        except UserError:
            out.append({"vid": vid, "refs": names.get(vid, []), "damaged": True, "created": 0})
            continue
        out.append({"vid": vid, "refs": sorted(names.get(vid, [])), "kind": manifest["kind"],
                    "counts": manifest["counts"], "op": manifest.get("op", {}).get("op", "?"),
                    "note": manifest.get("note", ""), "created": manifest.get("created", 0)})
    return sorted(out, key=lambda v: -v["created"])


def lineage(store, version) -> list:
    """The version and its ancestors, nearest first: [{vid, op, params, counts, refs}]."""
    out, seen, todo = [], set(), [version.vid]
    while todo:
        vid = todo.pop(0)
        if vid in seen:
            continue
        seen.add(vid)
        if not (store.version_path(vid) / "manifest.json").is_file():
            out.append({"vid": vid, "missing": True})
            continue
        manifest = read_manifest(store.version_path(vid))
        op = dict(manifest.get("op", {}))
        out.append({"vid": vid, "op": op.pop("op", "?"), "params": op, "counts": manifest["counts"],
                    "note": manifest.get("note", ""), "refs": store.names_of(vid)})
        todo.extend(manifest.get("parents", []))
    return out


def diff(a: Version, b: Version, show: int = 5) -> dict:
    """What changed from a to b, by content: examples removed and added (counted with multiplicity), and
    examples whose split or weight changed."""
    ta, tb = a.table(), b.table()
    count_a = Counter(zip(ta["sha256"].tolist(), ta["split"].tolist()))
    count_b = Counter(zip(tb["sha256"].tolist(), tb["split"].tolist()))
    removed, added = count_a - count_b, count_b - count_a
    text_of = dict(zip(ta["sha256"].tolist(), ta["text"].tolist()))
    text_of.update(zip(tb["sha256"].tolist(), tb["text"].tolist()))
    weight_a = dict(zip(ta["sha256"].tolist(), ta["weight"].tolist()))
    reweighted = [(s, weight_a[s], w) for s, w in zip(tb["sha256"].tolist(), tb["weight"].tolist())
                  if s in weight_a and weight_a[s] != w]

    def listed(counter, split):
        items = [(s, n) for (s, sp), n in counter.items() if sp == split]
        return {"count": sum(n for _, n in items), "examples": [text_of[s][:80] for s, _ in items[:show]]}
    return {"a": a.vid, "b": b.vid, "same": a.vid == b.vid,
            "removed": {split: listed(removed, split) for split in ("train", "test")},
            "added": {split: listed(added, split) for split in ("train", "test")},
            "reweighted": {"count": len(reweighted),
                           "examples": [f"{text_of[s][:60]} ({x} -> {y})" for s, x, y in reweighted[:show]]}}


def tag(store, version: Version, name: str) -> str:
    """Give the version another name: NAME@TAG, or TAG (under the version's own name)."""
    ref = name if "@" in name else f"{version.name}@{name}"
    base, label = ref.split("@", 1)
    if not base or not label or "@" in label or any(c.isspace() for c in ref):
        raise UserError(f"bad tag {name!r}", "use NAME@TAG or TAG, without spaces")
    if label.isdigit() or label in RESERVED_TAGS:
        raise UserError(f"tag {label!r} is made by nanostack itself", "choose a tag that is not a number or 'latest'")
    with store.lock():
        store.set_refs({ref: version.vid})
    return ref


def untag(store, ref: str) -> str:
    """Remove a name (the version stays until `gc` finds nothing else reaches it)."""
    refs = store.refs()
    if ref not in refs:
        raise UserError(f"there is no ref {ref!r}", "see `nanostack data list` for the names")
    with store.lock():
        refs = store.refs()
        vid = refs.pop(ref)
        write_json(store.home / "refs.json", dict(sorted(refs.items())))
    return vid


# ---- verify ---------------------------------------------------------------------------------------------

def verify(store) -> dict:
    """Every object rehashed, every version's examples rehashed and its id recomputed. Raises a UserError
    naming the first problem (and how many there are); returns counts when all is well."""
    if not store.exists():
        raise UserError(f"there is no dataset store at {store.home}", "import data first, or set NANOSTACK_HOME")
    problems = []
    objects = sorted(p for p in (store.home / "objects").glob("*/*") if p.is_file())
    for path in objects:
        if path.parent.name + path.name != sha256_file(path):
            problems.append(f"object {path.parent.name}{path.name[:10]} does not match its hash (damaged or edited)")
    for vid in store.version_ids():
        problems.extend(verify_version(store, vid))
    for ref, vid in store.refs().items():
        if not (store.version_path(vid) / "manifest.json").is_file():
            problems.append(f"ref {ref} points at missing version {vid[:12]}")
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise UserError(f"the store {store.home} is damaged: {problems[0]}{more}",
                        "restore the damaged files from a backup (or re-import the source files); nothing was changed")
    return {"objects": len(objects), "versions": len(store.version_ids()), "refs": len(store.refs())}


def verify_version(store, vid: str) -> list:
    path = store.version_path(vid)
    try:
        manifest = read_manifest(path)
        version = Version(store, vid)
        table = version.table()
    except UserError as e:
        return [f"version {vid[:12]}: {e.message}"]
    problems = []
    sha, ids = digests(table["text"])
    if (sha != table["sha256"]).any() or (ids != table["example_id"]).any():
        bad = int(np.flatnonzero(sha != table["sha256"])[0]) if (sha != table["sha256"]).any() else 0
        problems.append(f"version {vid[:12]}: example row {bad}'s text does not match its hash")
    elif version_id(manifest["kind"], table) != vid:
        problems.append(f"version {vid[:12]}: its examples do not hash to its id")
    for source in manifest.get("sources", []):
        if not store.object_path(source["object"]).is_file():
            problems.append(f"version {vid[:12]}: its source object {source['object'][:12]} ({source['name']}) is missing")
    from nanostack.data.versions import read_rows  # noqa: PLC0415

    for split in ("train", "test"):
        try:
            texts = [row[0] for row in read_rows(path, split)]
        except UserError:
            problems.append(f"version {vid[:12]}: its {split} files are missing or damaged (`data materialize` "
                            "rewrites them)")
            continue
        if texts != table["text"][table["split"] == split].tolist():
            problems.append(f"version {vid[:12]}: {split}.txt differs from its examples (`data materialize`)")
    return problems


# ---- gc -----------------------------------------------------------------------------------------------

def gc(store, dry_run: bool = False) -> dict:
    """Remove versions no ref reaches (directly or as an ancestor), objects no kept version needs, and
    scores and cached derivations of removed versions."""
    with store.lock():
        live, todo = set(), list(store.refs().values())
        while todo:
            vid = todo.pop()
            if vid in live or not (store.version_path(vid) / "manifest.json").is_file():
                continue
            live.add(vid)
            todo.extend(read_manifest(store.version_path(vid)).get("parents", []))
        dead_versions = [v for v in store.version_ids() if v not in live]
        needed = set()
        for vid in live:
            manifest = read_manifest(store.version_path(vid))
            needed.update(s["object"] for s in manifest.get("sources", []))
            needed.update(manifest.get("op", {}).get("inputs", []))
        objects = [p for p in (store.home / "objects").glob("*/*") if p.is_file()]
        dead_objects = [p for p in objects if p.parent.name + p.name not in needed]
        dead_scores = []
        for path in store.scores_dir.glob("*/manifest.json") if store.scores_dir.is_dir() else []:
            try:
                vid = json.loads(path.read_text(encoding="utf-8"))["vid"]
            except (ValueError, KeyError, OSError):
                continue
            if vid not in live:
                dead_scores.append(path.parent)
        dead_derivations = []
        for path in (store.home / "derivations").glob("*"):
            try:
                vid = json.loads(path.read_text(encoding="utf-8"))["vid"]
            except (ValueError, KeyError, OSError):
                vid = None
            if vid not in live:
                dead_derivations.append(path)
        leftovers = [p for folder in (store.versions_dir, store.scores_dir) if folder.is_dir()
                     for p in folder.glob(".tmp-*")]
        if not dry_run:
            for vid in dead_versions:
                store.remove_tree(store.version_path(vid))
            for path in dead_objects:
                path.chmod(0o644)
                path.unlink()
            for path in dead_scores + leftovers:
                store.remove_tree(path)
            for path in dead_derivations:
                path.unlink()
    return {"versions": [v[:12] for v in dead_versions], "objects": len(dead_objects), "scores": len(dead_scores),
            "derivations": len(dead_derivations), "leftovers": len(leftovers), "dry_run": dry_run}
