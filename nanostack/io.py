"""Plumbing below every layer: crash-safe file writes and the fetch-once download cache.

Writes go to a temporary name, then rename over the target. A rename within one folder is atomic
on POSIX, so a reader (or a run killed mid-write) sees either the old file or the new one, never
half of one. Downloads (corpora, tokenizer ranks) are fetched once into the cache, or read from
NANOSTACK_DATA_DIR when a local copy is provided.
"""
import json
import os
import shutil
import sys
from pathlib import Path

from nanostack.errors import UserError


def write_atomic(path, data) -> None:
    """Write data (str or bytes) to path: to path.tmp first, then rename over path. On failure (a full
    disk, say) the old file is untouched and the temporary one removed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_mode() -> int:
    """The mode a new file gets under this process's umask (0644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def describe_os_error(e: OSError) -> str:
    """An OSError as one line: what failed, on which file."""
    where = f" {e.filename}" if e.filename else ""
    reason = e.strerror or type(e).__name__
    return f"cannot write or read{where}: {reason}"


def write_json(path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} is missing", "check the path, or re-create it")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is corrupt ({e})", "restore it or start a new run") from None
    if not isinstance(obj, dict):
        raise UserError(f"{what} {path} is not a JSON object", "restore it or start a new run")
    return obj


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written folder `tmp` into place at `final`.

    Two renames: final -> final.old, tmp -> final. A crash between them leaves only
    final.old, which `existing_dir` then returns, so a complete folder is always found.
    """
    old = final.with_name(final.name + ".old")
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:  # an earlier swap was cut between its renames: old is the good copy
            os.replace(old, final)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def existing_dir(final: Path):
    """The complete folder written by `replace_dir` at `final`, or None if there is none."""
    if final.is_dir():
        return final
    old = final.with_name(final.name + ".old")
    return old if old.is_dir() else None


def cache_dir() -> Path:
    """Where nanostack keeps prepared shards and downloads: NANOSTACK_CACHE_DIR, else ~/.cache/nanostack."""
    root = os.environ.get("NANOSTACK_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nanostack")
    return Path(root)


def fetch_once(name: str, filename: str, url: str) -> Path:
    """Local copy of a downloadable file (a corpus, or a tokenizer's ranks): from NANOSTACK_DATA_DIR,
    else the cache, else downloaded once into the cache."""
    local = os.environ.get("NANOSTACK_DATA_DIR")
    if local:
        path = Path(local) / filename
        if not path.is_file():
            raise UserError(f"NANOSTACK_DATA_DIR is set but {path} does not exist",
                            f"put {filename} there, or unset NANOSTACK_DATA_DIR to download it")
        return path
    path = cache_dir() / "downloads" / filename
    if not path.is_file():
        print(f"downloading {name} from {url}", file=sys.stderr, flush=True)
        try:
            import urllib.request  # noqa: PLC0415  (slow to import; only a download needs it)

            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except OSError as e:
            raise UserError(f"could not download {name} from {url} ({e})",
                            f"set NANOSTACK_DATA_DIR to a folder holding {filename}") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    return path
