"""Text checks shared by import and the report: how bytes fail to be text (binary, not UTF-8), what
inside valid text is suspect (a byte-order mark, U+FFFD replacement characters, control characters),
and the normalized form that makes case and whitespace variants equal.

Normalization is NFKC, then casefold, then runs of whitespace become one space and the ends are
stripped. It runs over all examples joined into one string, so a million lines cost three C calls
rather than a million Python ones.
"""
import re
import unicodedata

BINARY_SNIFF = 8000  # git's buffer_is_binary: a NUL in the first 8,000 bytes means binary
BOM = "\ufeff"
REPLACEMENT = "\ufffd"
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls and DEL, but tab, newline, CR
SUSPECT = re.compile(r"[\ufeff\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
WHITESPACE = re.compile(r"\s+")
SEPARATOR = "\x00"  # joins examples for bulk normalization; examples holding it are done one by one


def decode_problem(raw: bytes):
    """None if raw is UTF-8 text, else (kind, byte offset): ("binary", first NUL) or ("not-utf8", first bad byte)."""
    nul = raw.find(b"\x00", 0, BINARY_SNIFF)
    if nul >= 0:
        return "binary", nul
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return "not-utf8", e.start
    return None


def suspect_characters(text: str):
    """[(kind, character offset)] of the first BOM, U+FFFD and control character of a text."""
    found = {}
    for match in SUSPECT.finditer(text):
        ch = match.group()
        kind = "bom" if ch == BOM else "replacement-char" if ch == REPLACEMENT else "control-char"
        found.setdefault(kind, match.start())
        if len(found) == 3:
            break
    return sorted(found.items(), key=lambda kv: kv[1])


def normalize(text: str) -> str:
    return WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def normalize_all(texts) -> list:
    """normalize() of every text, in bulk."""
    texts = list(texts)
    joined = SEPARATOR.join(texts)
    if not texts or joined.count(SEPARATOR) != len(texts) - 1:
        return [normalize(t) for t in texts]
    if not joined.isascii():
        joined = unicodedata.normalize("NFKC", joined)
    joined = WHITESPACE.sub(" ", joined.casefold())  # \x00 is not whitespace, so the joints stay
    out = joined.split(SEPARATOR)
    if len(out) != len(texts):  # NFKC made or removed a separator: fall back to one at a time
        return [normalize(t) for t in texts]
    return [t.strip() for t in out]
