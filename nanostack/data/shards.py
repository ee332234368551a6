"""Token shards: a corpus split 90/10 into train and val, tokenized, and cached on disk.

Shards are content-addressed: their folder is named by a hash of the text, the tokenizer and
the split rule, so the same data is prepared once and reused by every run that asks for it.
Each split is a flat array of token ids (uint16 when the vocabulary fits) read back as a memmap.
"""
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanostack.data.sources import Corpus, cache_dir, load_corpus
from nanostack.errors import UserError
from nanostack.io import existing_dir, read_json, replace_dir, write_json
from nanostack.tokenizer import build_tokenizer, load_tokenizer, parse_spec, spec_cache_key

VAL_FRACTION = 0.1
SHARD_FORMAT = 1  # bump when the split rule or the file layout changes


@dataclass
class Shards:
    path: Path
    meta: dict
    tokenizer: object
    train: np.ndarray
    val: np.ndarray

    mode = "stream"

    @property
    def data_hash(self) -> str:
        return self.meta["data_hash"]

    def batch(self, split: str, batch_size: int, block_size: int, generator, device="cpu"):
        """Random windows of block_size tokens from the train or val split (see loader.get_batch)."""
        from nanostack.data.loader import get_batch  # noqa: PLC0415 (loader imports torch; shards does not)

        return get_batch(self.train if split == "train" else self.val, batch_size, block_size, generator, device)

    def describe(self) -> dict:
        return {"data_shards": str(self.path)}


def corpus_hash(corpus: Corpus) -> str:
    h = hashlib.sha256()
    for name, text in corpus.documents:
        h.update(name.encode("utf-8") + b"\x00" + hashlib.sha256(text.encode("utf-8")).digest())
    return h.hexdigest()


def split_corpus(corpus: Corpus):
    """(train_text, val_text). A single text splits at 90% of its length; a folder sends whole
    files to one side, picked by a hash of their names so that the split is stable."""
    if not corpus.split_by_document:
        text = "".join(text for _, text in corpus.documents)
        cut = int(len(text) * (1 - VAL_FRACTION))
        return text[:cut], text[cut:]
    total = sum(len(text) for _, text in corpus.documents)
    by_hash = sorted(corpus.documents, key=lambda doc: hashlib.sha256(doc[0].encode("utf-8")).digest())
    val_names, val_chars = set(), 0
    for name, text in by_hash:
        if val_chars >= VAL_FRACTION * total or len(val_names) + 1 == len(by_hash):
            break
        val_names.add(name)
        val_chars += len(text)
    return (_join(d for d in corpus.documents if d[0] not in val_names),
            _join(d for d in corpus.documents if d[0] in val_names))


def _join(documents) -> str:
    return "".join(text if text.endswith("\n") else text + "\n" for _, text in documents)


def prepare_shards(data: str, tokenizer: str = "char", log=print) -> Shards:
    """Read `data`, split it, tokenize it, and cache the shards; reuse the cache when it holds them."""
    parse_spec(tokenizer)  # a bad tokenizer spec fails before any data is read
    corpus = load_corpus(data)
    data_hash = corpus_hash(corpus)
    key = hashlib.sha256(f"{SHARD_FORMAT}|{spec_cache_key(tokenizer)}|{data_hash}".encode()).hexdigest()[:20]
    final = cache_dir() / "shards" / key
    found = existing_dir(final)
    if found is None:
        t0 = time.time()
        _write_shards(corpus, tokenizer, data_hash, final, log)
        log(f"prepared {data} in {time.time() - t0:.1f}s")
        found = final
    return open_shards(found)


def _write_shards(corpus: Corpus, tokenizer_spec: str, data_hash: str, final: Path, log) -> None:
    train_text, val_text = split_corpus(corpus)
    if tokenizer_spec.startswith("bpe:"):
        log(f"training a {tokenizer_spec} tokenizer on {len(train_text):,} characters")
    tok = build_tokenizer(tokenizer_spec, train_text, val_text)
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, text in (("train", train_text), ("val", val_text)):
        # data is plain text: special-token text in it (say "<|endoftext|>") is encoded as characters
        encode = getattr(tok, "encode_ordinary", tok.encode)
        ids = np.asarray(encode(text), dtype=dtype)
        ids.tofile(tmp / f"{split}.bin")
        sizes[split] = int(ids.size)
    tok.save(tmp / "tokenizer.json")
    write_json(tmp / "meta.json", {
        "format": SHARD_FORMAT, "source": corpus.source, "data_hash": data_hash, "tokenizer": tokenizer_spec,
        "vocab_size": tok.vocab_size, "dtype": np.dtype(dtype).name,
        "documents": len(corpus.documents), "skipped_files": len(corpus.skipped),
        "characters": len(train_text) + len(val_text), "train_tokens": sizes["train"], "val_tokens": sizes["val"],
    })
    replace_dir(tmp, final)


def open_shards(path: Path) -> Shards:
    meta = read_json(path / "meta.json", "shard metadata")
    tok = load_tokenizer(path / "tokenizer.json")
    dtype = np.dtype(meta["dtype"])
    splits = {}
    for split in ("train", "val"):
        n = meta[f"{split}_tokens"]
        file = path / f"{split}.bin"
        if not file.is_file() or file.stat().st_size != n * dtype.itemsize:
            raise UserError(f"cached shard {file} is missing or truncated", f"delete {path} and prepare again")
        # np.memmap cannot map an empty file
        splits[split] = np.memmap(file, dtype=dtype, mode="r") if n else np.zeros(0, dtype=dtype)
    return Shards(path, meta, tok, splits["train"], splits["val"])
