"""BPE training over worker processes: the counts, the merges (equal to rustbpe's) and the
encodings the trainer hands to the tokenizer are those of the one-process path."""
import inspect
import json.decoder
import textwrap
from pathlib import Path

import pytest
import rustbpe

from testkit import shared_file
from nanostack.tokenizer import BPETokenizer
from nanostack.tokenizer import bpe_train
from nanostack.tokenizer.bpe_encode import ChunkEncoder
from nanostack.tokenizer.bpe_train import count_chunks, train_and_segment, train_merges
from nanostack.tokenizer.patterns import GPT2, GPT4, compile_pattern


@pytest.fixture(scope="module")
def shakespeare():
    return shared_file("tinyshakespeare.txt").read_text(encoding="utf-8")


def rustbpe_vocab(texts, vocab_size, pattern):
    theirs = rustbpe.Tokenizer()
    theirs.train_from_iterator(texts, vocab_size, pattern=pattern)
    return [bytes(token) for token, _ in sorted(theirs.get_mergeable_ranks(), key=lambda t: t[1])]


@pytest.mark.parametrize("pattern", [GPT4, GPT2, r"\w+|\W+"])
def test_counting_in_workers_equals_counting_here(shakespeare, monkeypatch, pattern):
    """One long text cut into pieces, and documents as a list and as a stream, over processes."""
    monkeypatch.setattr(bpe_train, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(bpe_train, "ROUND_CHARS", 50_000)
    monkeypatch.setattr(bpe_train, "PIECE_CHARS", 20_000)
    text = shakespeare[:300_000]
    documents = [text[i:i + 7_000] for i in range(0, len(text), 7_000)]
    here = count_chunks([text], pattern, workers=1)
    assert sum(here.values()) > 50_000
    assert count_chunks([text], pattern, workers=2) == here  # one text, cut at safe places
    by_document = count_chunks(documents, pattern, workers=1)
    assert count_chunks(documents, pattern, workers=2) == by_document
    assert count_chunks(iter(documents), pattern, workers=3) == by_document  # a stream, in rounds


def test_training_over_workers_equals_rustbpe(shakespeare, monkeypatch):
    monkeypatch.setattr(bpe_train, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(bpe_train, "PIECE_CHARS", 30_000)
    text = shakespeare[:400_000]
    merges = train_merges(count_chunks([text], GPT4, workers=2), 1000 - 256)
    assert BPETokenizer(merges, GPT4).vocab == rustbpe_vocab([text], 1000, GPT4)


def test_training_on_python_source_equals_rustbpe():
    """Code: long runs of spaces and repeated punctuation, where (a, a) merges overlap."""
    texts = [Path(module.__file__).read_text(encoding="utf-8") for module in (textwrap, inspect, json.decoder)]
    ours = BPETokenizer.train(texts, 1500, pattern="gpt4")
    assert ours.vocab == rustbpe_vocab(texts, 1500, GPT4)


def test_segments_are_what_bpe_makes_of_each_chunk(shakespeare):
    """The trainer's final state of each chunk, handed to the encoder, is BPE's encoding of it."""
    counts = count_chunks([shakespeare[:100_000]], GPT4, workers=1)
    merges, segments = train_and_segment(counts, 700 - 256)
    tok = BPETokenizer(merges, GPT4)
    encoder = ChunkEncoder(compile_pattern(GPT4), GPT4, tok.vocab, tok.ranks, tok.byte_ids)
    assert len(segments) == len(counts)
    assert [list(encoder.encode_chunk(c.encode())) for c in counts] == segments
    assert sum(len(s) > 1 for s in segments) > 1000


def test_a_trained_tokenizer_encodes_as_a_fresh_one(shakespeare):
    text = shakespeare[:200_000]
    trained = BPETokenizer.train(text, 600, pattern="gpt4")
    fresh = BPETokenizer(trained.merges, trained.pattern)
    assert trained.encode(text) == fresh.encode(text)
    assert trained.encode(shakespeare[-50_000:]) == fresh.encode(shakespeare[-50_000:])  # text it never saw


def test_training_is_deterministic_over_workers(shakespeare, monkeypatch):
    monkeypatch.setattr(bpe_train, "PARALLEL_MIN_CHARS", 0)
    documents = [shakespeare[i:i + 20_000] for i in range(0, 300_000, 20_000)]
    runs = [train_merges(count_chunks(documents, GPT4, workers=w), 400) for w in (1, 2, 3)]
    assert runs[0] == runs[1] == runs[2]


def _count_in(args):
    return count_chunks(*args)


def test_counting_inside_a_pool_worker_does_not_start_processes(monkeypatch):
    """A multiprocessing.Pool worker is daemonic and may not have children: it counts alone."""
    from multiprocessing import get_context

    monkeypatch.setattr(bpe_train, "PARALLEL_MIN_CHARS", 0)
    texts = ["the cat sat on the mat\n"] * 500
    with get_context("fork").Pool(1) as pool:
        assert pool.map(_count_in, [(texts, GPT4, 2)]) == [count_chunks(texts, GPT4, workers=1)]
