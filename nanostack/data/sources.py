"""Where text comes from: the built-in corpora, a text file, or a folder of text files.

A corpus is a list of documents (name, text) read as UTF-8. Binary or non-UTF-8 files are an
error when named directly and are skipped (and counted) inside a folder, as are files that cannot
be read and files whose names are not UTF-8. A leading UTF-8 byte-order mark is not text: it is
dropped, so it never becomes an invisible token.
"""
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from nanostack.errors import UserError
from nanostack.io import fetch_once

# name -> (file name in NANOSTACK_DATA_DIR and the cache, canonical download address)
DOWNLOADS = {
    "shakespeare": ("tinyshakespeare.txt",
                    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"),
    "names": ("names.txt", "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"),
}
BUILTINS = ("pystdlib", *DOWNLOADS)


@dataclass
class Corpus:
    source: str                   # what the user asked for: a built-in name or a path
    documents: list               # [(name, text)], in a fixed order
    split_by_document: bool       # a folder splits whole files; a single text splits by position
    skipped: list = field(default_factory=list)  # names of files that were not UTF-8 text


def load_corpus(spec: str) -> Corpus:
    """Read the corpus named by `spec`: a built-in name (pystdlib, shakespeare, names) or a path."""
    if spec == "pystdlib":
        return _read_folder(Path(sysconfig.get_paths()["stdlib"]), spec, suffix=".py", skip_dirs={"site-packages"})
    if spec in DOWNLOADS:
        path = builtin_path(spec)
        return Corpus(spec, [(path.name, _read_text_file(path))], split_by_document=False)
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"data path {spec} does not exist",
                        f"give a text file, a folder of text files, or one of: {', '.join(BUILTINS)}")
    if path.is_dir():
        return _read_folder(path, spec)
    return Corpus(spec, [(path.name, _read_text_file(path))], split_by_document=False)


def builtin_path(name: str) -> Path:
    """The local copy of a downloadable built-in corpus (NANOSTACK_DATA_DIR, the cache, or fetched once)."""
    return fetch_once(name, *DOWNLOADS[name])


def join_documents(documents) -> str:
    """Documents as one text, each ending with a newline (so no line runs from one file into the next)."""
    return "".join(text if text.endswith("\n") else text + "\n" for _, text in documents)


def _decode(raw: bytes):
    if b"\x00" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[1:] if text.startswith("\ufeff") else text


def _read_text_file(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"data path {path} is not a regular file", "give a text file or a folder")
    text = _decode(path.read_bytes())
    if text is None:
        raise UserError(f"{path} is binary or not UTF-8 text", "convert it to UTF-8 text, or give another file")
    if not text.strip():
        raise UserError(f"{path} is empty", "give a file with text in it")
    return text


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a file name of undecodable bytes (surrogate escapes)
        return False


def _read_or_none(path: Path):
    try:
        return _decode(path.read_bytes()) if path.is_file() else None
    except OSError:  # unreadable: permissions, a file that vanished
        return None


def _read_folder(root: Path, spec: str, suffix: str = "", skip_dirs=frozenset()) -> Corpus:
    documents, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in skip_dirs)
        for filename in sorted(filenames):
            if filename.startswith(".") or not filename.endswith(suffix):
                continue
            path = Path(dirpath) / filename
            name = path.relative_to(root).as_posix()
            text = _read_or_none(path) if _is_utf8(name) else None
            if text is None:
                skipped.append(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            elif text.strip():
                documents.append((name, text))
    if not documents:
        why = f" ({len(skipped)} binary, non-UTF-8 or unreadable files skipped)" if skipped else ""
        raise UserError(f"folder {spec} has no text files{why}", "give a folder that holds UTF-8 text files")
    return Corpus(spec, documents, split_by_document=True, skipped=skipped)
