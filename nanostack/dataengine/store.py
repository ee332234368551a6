"""The store: the folder that holds imported files, dataset versions, scores and the refs that name them.

    NANOSTACK_HOME (default .nanostack in the current directory)
      objects/ab/cdef…       imported files (and op inputs such as ids files), by sha256, write-once
      refs.json              {"NAME@TAG": vid}; ops move NAME@latest and add NAME@1, NAME@2, …
      versions/<vid>/        manifest.json, examples.parquet, train.txt/.json, test.txt/.json (+ report, signals)
      derivations/<dkey>     which version an op on given inputs made (re-running an op is a lookup)
      scores/<score_id>/     manifest.json, example_loss-RANK.parquet, token_loss-RANK.f16
      runs.jsonl             one line per training run on a version (the trainer appends it)
      loops/<id>/loop.md     the retrain loop's table
      lock                   held while a command changes refs, versions or objects

Every file is written under a temporary name and renamed; versions and objects are never modified
after they are written, so a crash leaves the store as it was. Readers take no lock.
"""
import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from nanostack.data.versions import read_refs, resolve, store_home
from nanostack.errors import UserError
from nanostack.io import write_atomic, write_json

NUMERIC_TAG = "latest"


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not name or "@" in name or any(c.isspace() for c in name) or name.startswith("-"):
        raise UserError(f"bad version name {name!r}", "use a name without '@' or spaces, e.g. --name names")
    return name


class Store:
    def __init__(self, home=None):
        self.home = store_home(home).resolve()

    def __repr__(self):
        return f"Store({str(self.home)!r})"

    # ---- layout -----------------------------------------------------------------------------------
    @property
    def versions_dir(self) -> Path:
        return self.home / "versions"

    @property
    def scores_dir(self) -> Path:
        return self.home / "scores"

    def version_path(self, vid: str) -> Path:
        return self.versions_dir / vid

    def exists(self) -> bool:
        return self.versions_dir.is_dir()

    def ensure(self) -> "Store":
        for name in ("objects", "versions", "derivations", "scores", "loops"):
            (self.home / name).mkdir(parents=True, exist_ok=True)
        return self

    @contextmanager
    def lock(self):
        """Held by the one command that changes the store; a second one waits for it."""
        self.ensure()
        fd = os.open(self.home / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)

    # ---- objects ----------------------------------------------------------------------------------
    def object_path(self, sha: str) -> Path:
        return self.home / "objects" / sha[:2] / sha[2:]

    def put_object(self, data: bytes, sha: str = "") -> str:
        """Store bytes by their sha256 (once: an object is never rewritten) and return the hash (sha: the hash
        when the caller has it already)."""
        sha = sha or hashlib.sha256(data).hexdigest()
        path = self.object_path(sha)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
            os.chmod(path, 0o444)
        return sha

    def put_file(self, path) -> str:
        return self.put_object(Path(path).read_bytes())

    # ---- refs -------------------------------------------------------------------------------------
    def refs(self) -> dict:
        return read_refs(self.home)

    def resolve(self, ref: str) -> str:
        if not self.exists():
            raise UserError(f"there is no dataset store at {self.home}",
                            "import data first (`nanostack data import PATH`), or set NANOSTACK_HOME")
        return resolve(ref, self.home)

    def set_refs(self, updates: dict) -> None:
        refs = self.refs()
        refs.update(updates)
        write_json(self.home / "refs.json", dict(sorted(refs.items())))

    def advance(self, name: str, vid: str) -> str:
        """Point NAME@latest at vid; a version new to NAME also gets the next number (NAME@3). Returns
        the version's numbered ref."""
        check_name(name)
        refs = self.refs()
        numbered = [k for k, v in refs.items() if k.startswith(f"{name}@") and k.split("@", 1)[1].isdigit()]
        for key in numbered:
            if refs[key] == vid:
                self.set_refs({f"{name}@{NUMERIC_TAG}": vid})
                return key
        tag = 1 + max((int(k.split("@", 1)[1]) for k in numbered), default=0)
        self.set_refs({f"{name}@{tag}": vid, f"{name}@{NUMERIC_TAG}": vid})
        return f"{name}@{tag}"

    def names_of(self, vid: str) -> list:
        return sorted(k for k, v in self.refs().items() if v == vid)

    # ---- derivations (the op cache) ---------------------------------------------------------------
    def derivation(self, dkey: str):
        path = self.home / "derivations" / dkey
        if not path.is_file():
            return None
        try:
            vid = json.loads(path.read_text(encoding="utf-8"))["vid"]
        except (ValueError, KeyError, TypeError):
            return None
        return vid if (self.version_path(vid) / "manifest.json").is_file() else None

    def record_derivation(self, dkey: str, vid: str, op: dict) -> None:
        write_json(self.home / "derivations" / dkey, {"vid": vid, "op": op})

    # ---- runs ---------------------------------------------------------------------------------------
    def runs(self) -> list:
        """The records of runs.jsonl (a line cut short is skipped)."""
        path = self.home / "runs.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "vid" in record and "run" in record:
                out.append(record)
        return out

    # ---- listing ------------------------------------------------------------------------------------
    def version_ids(self) -> list:
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if len(p.name) == 64 and p.is_dir())

    def remove_tree(self, path: Path) -> None:
        """Remove a folder of read-only files (objects are 0444)."""
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
        shutil.rmtree(path)
