import numpy as np
import pytest
import torch

from testkit import shared_file
from nanostack.data import get_batch, load_corpus, prepare_shards
from nanostack.data.shards import split_corpus
from nanostack.errors import UserError


def test_single_file_splits_90_10_by_position(corpus):
    text = corpus.read_text()
    train, val = split_corpus(load_corpus(str(corpus)))
    assert train + val == text
    assert len(train) == int(len(text) * 0.9)


def test_folder_sends_whole_files_to_one_side_and_skips_binary(tmp_path):
    for i in range(20):
        (tmp_path / f"doc{i}.txt").write_text(f"document {i} " * 50 + "\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    corpus = load_corpus(str(tmp_path))
    assert sorted(corpus.skipped) == ["image.png", "latin1.txt"]
    train, val = split_corpus(corpus)
    docs = dict(corpus.documents)
    for name, text in docs.items():
        assert (text in train) != (text in val), name  # each file wholly on one side
    assert 0.05 < len(val) / (len(train) + len(val)) < 0.2
    assert prepare_shards(str(tmp_path)).meta["skipped_files"] == 2


def test_shards_are_cached_by_content(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOSTACK_CACHE_DIR", str(tmp_path / "fresh-cache"))
    logs = []
    first = prepare_shards(str(corpus), log=logs.append)
    second = prepare_shards(str(corpus), log=logs.append)
    assert first.path == second.path and len(logs) == 1  # prepared once, then reused
    assert np.array_equal(first.train, second.train)
    corpus.write_text(corpus.read_text() + " more")
    third = prepare_shards(str(corpus), log=logs.append)
    assert third.path != first.path and third.data_hash != first.data_hash


def test_shards_hold_the_encoded_text(corpus):
    shards = prepare_shards(str(corpus))
    text = corpus.read_text()
    assert shards.tokenizer.decode(np.concatenate([shards.train, shards.val])) == text


def test_builtin_shakespeare_from_data_dir():
    shared_file("tinyshakespeare.txt")
    shards = prepare_shards("shakespeare")
    assert shards.meta["vocab_size"] == 65
    assert (len(shards.train), len(shards.val)) == (1_003_854, 111_540)  # nanoGPT's shakespeare_char split


def test_builtin_pystdlib_is_always_there():
    corpus = load_corpus("pystdlib")
    names = [name for name, _ in corpus.documents]
    assert "os.py" in names and len(names) > 100
    assert not any(name.startswith("site-packages") for name in names)


def test_missing_data_dir_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOSTACK_DATA_DIR", str(tmp_path))
    with pytest.raises(UserError, match="tinyshakespeare.txt does not exist"):
        load_corpus("shakespeare")


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"  \n", "is empty"),
    (b"\x00\x01binary", "binary or not UTF-8"),
    ("caf\xe9".encode("latin-1"), "binary or not UTF-8"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_corpus(str(path))


def test_folder_without_text(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x00\xff")
    with pytest.raises(UserError, match="no text files .1 binary"):
        load_corpus(str(tmp_path))


def test_batches_are_shifted_windows():
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = get_batch(tokens, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(8, 15, dtype=torch.int64))  # contiguous windows
    again, _ = get_batch(tokens, 8, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)  # the generator alone decides the data order
