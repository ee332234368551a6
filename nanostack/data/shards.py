"""Token shards: a corpus split 90/10 into train and val, tokenized, and cached on disk; the
stream kind of Dataset (dataset.py), read in windows of block_size tokens.

Shards are content-addressed: their folder is named by a hash of the text, the tokenizer and
the split rule, so the same data is prepared once and reused by every run that asks for it.
Each split is a flat array of token ids (uint16 when the vocabulary fits) read back as a memmap.
"""
import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanostack.data.dataset import Dataset, Example, example_id
from nanostack.data.sources import Corpus, join_documents, load_corpus
from nanostack.errors import UserError
from nanostack.io import cache_dir, existing_dir, read_json, write_json
from nanostack.tokenizer import Tokenizer, TokenizerSpec, load_tokenizer

VAL_FRACTION = 0.1
SHARD_FORMAT = 1  # bump when the split rule or the file layout changes
DEFAULT_BLOCK_SIZE = 64


@dataclass
class Shards(Dataset):
    path: Path
    meta: dict
    tokenizer: object
    train: np.ndarray
    val: np.ndarray

    kind = "stream"
    heldout = "val"

    @property
    def source(self) -> str:
        return self.meta["source"]

    @property
    def data_hash(self) -> str:
        return self.meta["data_hash"]

    @property
    def skipped(self) -> list:
        return self.meta.get("skipped_names", [])

    def tokens(self, split: str) -> np.ndarray:
        return self.train if self.split_name(split) == "train" else self.val

    def block_size(self, requested=None, log=print) -> int:
        """requested (default 64), if each split holds at least one window of it plus its target."""
        block_size = requested or DEFAULT_BLOCK_SIZE
        for split in ("train", "val"):
            n = len(self.tokens(split))
            if n < block_size + 1:
                raise UserError(f"the {split} split of {self.source} has {n} tokens, fewer than one block of "
                                f"{block_size} + 1", "give more text, or lower --block-size")
        return block_size

    def batch(self, split, batch_size, block_size, generator, device="cpu"):
        """Random windows of block_size tokens (see loader.get_batch)."""
        from nanostack.data.loader import get_batch  # noqa: PLC0415 (loader imports torch; shards does not)

        return get_batch(self.tokens(split), batch_size, block_size, generator, device)

    def examples(self, split, block_size) -> list:
        """The split's exact pass: consecutive windows of block_size tokens (the last one may be shorter),
        each predicting the token after each of its tokens; a window's text includes its last target."""
        tokens = self.tokens(split)
        name = self.split_name(split)
        out = []
        for index, start in enumerate(range(0, max(len(tokens) - 1, 0), block_size)):
            data = self.tokenizer.decode_bytes(tokens[start:start + block_size + 1])
            out.append(Example(example_id(data), name, index, self.source, start,
                               data.decode("utf-8", errors="replace")))
        return out

    def batches(self, split, block_size, batch_size=64):
        from nanostack.data.loader import stream_windows  # noqa: PLC0415

        yield from stream_windows(self.tokens(split), block_size, batch_size)

    def unit(self, block_size) -> str:
        return f"windows of {block_size} tokens"

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
    return (join_documents(d for d in corpus.documents if d[0] not in val_names),
            join_documents(d for d in corpus.documents if d[0] in val_names))


def tokenizer_key(tokenizer) -> str:
    """A cache key for a tokenizer given as an object (a run's own): the hash of its saved form."""
    import json  # noqa: PLC0415

    return "tokenizer:" + hashlib.sha256(json.dumps(tokenizer.to_dict(), sort_keys=True).encode()).hexdigest()


def prepare_shards(data: str, tokenizer="char", log=print, expect_hash=None, reuse=None) -> Shards:
    """Read `data`, split it, tokenize it, and cache the shards; reuse the cache when it holds them.

    tokenizer is a spec (char, bpe:N, gpt2, a .json file) or a tokenizer object (a run's own, so its ids
    keep their meaning). expect_hash, if given, is the data hash a run recorded: other data is refused.
    reuse is a shard folder a run recorded: used as it is if it holds this data with this tokenizer."""
    spec = None if isinstance(tokenizer, Tokenizer) else TokenizerSpec.parse(tokenizer)  # fails before reading data
    corpus = load_corpus(data)
    data_hash = corpus_hash(corpus)
    if expect_hash is not None and data_hash != expect_hash:
        raise UserError(f"the data {data} has changed since this run started (its content hash differs)",
                        "use the data it trained on, or train a new run on the new data")
    if reuse and spec is None and existing_dir(Path(reuse)) is not None:
        cached = open_shards(existing_dir(Path(reuse)))
        if cached.data_hash == data_hash and cached.tokenizer.to_dict() == tokenizer.to_dict():
            return cached
    tok_key = spec.cache_key() if spec is not None else tokenizer_key(tokenizer)
    key = hashlib.sha256(f"{SHARD_FORMAT}|{tok_key}|{data_hash}".encode()).hexdigest()[:20]
    final = cache_dir() / "shards" / key
    found = existing_dir(final)
    if found is None:
        t0 = time.time()
        _write_shards(corpus, spec or tokenizer, data_hash, final, log)
        log(f"prepared {data} in {time.time() - t0:.1f}s")
        found = existing_dir(final)
    return open_shards(found)


def _write_shards(corpus: Corpus, tokenizer, data_hash: str, final: Path, log) -> None:
    """Write the shards into a folder of this process's own, then rename it into place. Two processes
    preparing the same data at once both succeed; the first rename wins, the other copy is dropped."""
    train_text, val_text = split_corpus(corpus)
    if isinstance(tokenizer, TokenizerSpec):
        if tokenizer.kind == "bpe":
            log(f"training a {tokenizer.text} tokenizer on {len(train_text):,} characters")
        spec_text, tok = tokenizer.text, tokenizer.build(train_text, val_text)
        if tokenizer.kind == "bpe" and tok.vocab_size < tokenizer.vocab_size:
            log(f"note: {corpus.source} supports only {len(tok.merges):,} merges (no pair of tokens repeats after "
                f"that), so the vocabulary has {tok.vocab_size:,} tokens, not {tokenizer.vocab_size:,}")
    else:
        spec_text, tok = "tokenizer.json", tokenizer
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    tmp = final.with_name(f"{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir(parents=True)
    try:
        sizes = {}
        for split, text in (("train", train_text), ("val", val_text)):
            # data is plain text: special-token text in it (say "<|endoftext|>") is encoded as characters
            ids = tok.encode_array(text).astype(dtype)
            ids.tofile(tmp / f"{split}.bin")
            sizes[split] = int(ids.size)
        tok.save(tmp / "tokenizer.json")
        write_json(tmp / "meta.json", {
            "format": SHARD_FORMAT, "source": corpus.source, "data_hash": data_hash, "tokenizer": spec_text,
            "vocab_size": tok.vocab_size, "dtype": np.dtype(dtype).name,
            "documents": len(corpus.documents), "skipped_files": len(corpus.skipped),
            "skipped_names": corpus.skipped,
            "characters": len(train_text) + len(val_text), "train_tokens": sizes["train"],
            "val_tokens": sizes["val"],
        })
        try:
            os.rename(tmp, final)  # fails if another process got there first: its copy is as good as ours
        except OSError:
            if existing_dir(final) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
