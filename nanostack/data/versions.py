"""Dataset versions, read side: what the trainer needs to train on `--data NAME@TAG` (or a version id, or
a version folder) without importing the data engine.

The data engine (nanostack/dataengine) writes versions into a store, NANOSTACK_HOME (default
`.nanostack` in the current directory):

    refs.json                    {"NAME@TAG": vid}; NAME alone means NAME@latest
    versions/<vid>/manifest.json the version: kind, counts, parents, the op that made it
    versions/<vid>/train.txt     its examples materialized, in version order: the texts one after another,
    versions/<vid>/train.json    and {"length": [...] (characters), "weight", "source", "offset"}; test.* alike
    runs.jsonl                   one line per training run on a version (appended here)

A version is an example-per-row Dataset (examples.py's Examples): its split is frozen (taken at import
and inherited by every derived version), and a train example of weight w is repeated w times when the
dataset is materialized, so the trainer needs no notion of weights. Test examples weigh 1.
This module reads JSON only; it knows nothing of Parquet, DuckDB or how versions are made.
"""
import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from nanostack.data.examples import MIN_EXAMPLES, Examples, examples_tokenizer
from nanostack.errors import UserError
from nanostack.tokenizer import Tokenizer, TokenizerSpec

VID_PREFIX = re.compile(r"[0-9a-f]{6,64}")
DATASET_KIND = {"lines": "lines", "paragraphs": "paragraphs", "files": "paragraphs", "prompts": "paragraphs"}


def store_home(home=None) -> Path:
    """The store's folder: `home`, else NANOSTACK_HOME, else .nanostack in the current directory."""
    return Path(home or os.environ.get("NANOSTACK_HOME") or ".nanostack")


def is_version_ref(data: str) -> bool:
    """Whether `data` names a dataset version (NAME@TAG, a version id or its prefix, a version folder)
    rather than a built-in corpus, a file or a folder of text."""
    from nanostack.data.sources import BUILTINS  # noqa: PLC0415

    path = Path(data).expanduser()
    if path.is_dir():
        return (path / "manifest.json").is_file() and (path / "train.txt").is_file()
    if path.exists() or data in BUILTINS:
        return False
    return "@" in data or (VID_PREFIX.fullmatch(data) is not None and (store_home() / "versions").is_dir())


def read_refs(home=None) -> dict:
    path = store_home(home) / "refs.json"
    if not path.is_file():
        return {}
    try:
        refs = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"the store's refs {path} are damaged ({e})", "restore refs.json from a backup") from None
    if not isinstance(refs, dict):
        raise UserError(f"the store's refs {path} are damaged", "restore refs.json from a backup")
    return refs


def resolve(ref: str, home=None) -> str:
    """The version id that `ref` names: NAME@TAG, NAME (NAME@latest), or a unique prefix of a version id."""
    home = store_home(home)
    refs = read_refs(home)
    key = ref if "@" in ref else f"{ref}@latest"
    if key in refs:
        return refs[key]
    if VID_PREFIX.fullmatch(ref):
        versions = home / "versions"
        found = [p.name for p in versions.glob(f"{ref}*")] if versions.is_dir() else []
        found = [name for name in found if len(name) == 64]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UserError(f"version id prefix {ref} is ambiguous ({len(found)} versions start with it)",
                            "give more characters of the id")
    names = sorted({k.split("@")[0] for k in refs})
    known = f"known names: {', '.join(names[:8])}" if names else f"the store {home} has no versions yet"
    raise UserError(f"unknown dataset version {ref!r} in {home}",
                    f"{known}; see `nanostack data list` (or set NANOSTACK_HOME to the store you meant)")


def version_dir(data: str, home=None) -> Path:
    """The folder of the version `data` names (a ref, an id or the folder itself)."""
    path = Path(data).expanduser()
    if path.is_dir():
        return path.resolve()
    return (store_home(home) / "versions" / resolve(data, home)).resolve()


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"dataset version {folder} has no manifest.json", "run `nanostack data verify`") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"dataset version manifest {path} is damaged ({e})", "run `nanostack data verify`") from None
    if not isinstance(manifest, dict) or "vid" not in manifest or manifest.get("kind") not in DATASET_KIND:
        raise UserError(f"dataset version manifest {path} is damaged", "run `nanostack data verify`")
    return manifest


def read_rows(folder: Path, split: str) -> list:
    """[(text, weight, source, offset)] of one split, in version order."""
    folder = Path(folder)
    try:
        columns = json.loads((folder / f"{split}.json").read_text(encoding="utf-8"))
        with open(folder / f"{split}.txt", encoding="utf-8", newline="") as f:  # newline="": keep \r\n as is
            text = f.read()
        ends = list(itertools.accumulate(columns["length"]))
        if (ends[-1] if ends else 0) != len(text):
            raise ValueError(f"{split}.txt holds {len(text)} characters, its lengths say {ends[-1] if ends else 0}")
        texts = [text[a:b] for a, b in zip([0, *ends[:-1]], ends)]
        rows = list(zip(texts, columns["weight"], columns["source"], columns["offset"], strict=True))
    except FileNotFoundError:
        raise UserError(f"dataset version {folder} is not materialized ({split}.txt or {split}.json is missing)",
                        f"run `nanostack data materialize {folder.name[:12]}`") from None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        raise UserError(f"dataset version {folder}'s {split} files are damaged ({e})",
                        "run `nanostack data verify`, then `nanostack data materialize`") from None
    return rows


@dataclass
class VersionExamples(Examples):
    """A dataset version as an example-per-row Dataset; `version` is what a run records about it."""
    version: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {**super().describe(), "data_version": self.version}

    def record_run(self, run_dir) -> None:
        """Append this run to the store's runs.jsonl: one O_APPEND write of one line, so concurrent
        trainers never interleave."""
        home = Path(self.version["home"])
        if not home.is_dir():
            return
        line = json.dumps({"run": str(Path(run_dir).resolve()), "vid": self.version["vid"],
                           "ref": self.version["ref"], "time": round(time.time(), 3)}) + "\n"
        fd = os.open(home / "runs.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)


def open_version(data: str, tokenizer="char", expect_hash=None, repeat: bool = True, home=None) -> VersionExamples:
    """The version `data` names as a Dataset, tokenized by `tokenizer` (a spec, or a run's own tokenizer).
    With repeat, a train example of weight w occurs w times (what training sees); without, once each
    (what scoring sees, so losses line up with the version's rows)."""
    folder = version_dir(data, home)
    manifest = read_manifest(folder)
    vid = manifest["vid"]
    if expect_hash is not None and expect_hash != vid:
        raise UserError(f"the dataset version {data} is not the one this run trained on",
                        "use the version recorded in the run's config.json (data_version)")
    kind = DATASET_KIND[manifest["kind"]]
    train = read_rows(folder, "train")
    test = read_rows(folder, "test")
    train_words = [t for t, w, _, _ in train for _ in range(w if repeat else 1)]
    test_words = [t for t, _, _, _ in test]
    if len(train_words) + len(test_words) < MIN_EXAMPLES or not train_words or not test_words:
        raise UserError(f"dataset version {data} has {len(train_words)} train and {len(test_words)} test examples",
                        f"training needs both splits and at least {MIN_EXAMPLES} examples")
    places = {}
    for text, _, source, offset in train + test:
        places.setdefault(text, []).append((source, offset))
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = examples_tokenizer(TokenizerSpec.parse(tokenizer), kind, train_words, test_words)
    ref = data if not Path(data).expanduser().is_dir() else vid
    home_path = folder.parent.parent
    version = {"ref": ref, "vid": vid, "name": manifest.get("name", ""), "kind": manifest["kind"],
               "home": str(home_path), "path": str(folder)}
    dataset = VersionExamples(ref, tokenizer, train_words, test_words, vid, kind=kind, places=places,
                              version=version)
    dataset.boundary_id  # noqa: B018  (refuses a tokenizer without the boundary as one token)
    return dataset
