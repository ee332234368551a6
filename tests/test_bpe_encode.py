"""BPE encoding's fast paths give the ids of the plain algorithm (and of tiktoken): the one-token
look-up, the cache, huge texts in pieces, and encode_batch over worker processes."""
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from testkit import gpt2, reference, shared_file  # noqa: F401 (gpt2, reference: fixtures)
from nanostack.errors import UserError
from nanostack.tokenizer import BPETokenizer
from nanostack.tokenizer import bpe as bpe_module
from nanostack.tokenizer import bpe_encode
from nanostack.tokenizer.patterns import GPT2, GPT4, cut_text


@pytest.fixture(scope="module")
def shakespeare():
    return shared_file("tinyshakespeare.txt").read_text(encoding="utf-8")


lines = st.lists(st.text(alphabet=st.sampled_from(list("ab1 :\t\r\n'é🙂-")), max_size=12), max_size=40).map("\n".join)


@pytest.mark.parametrize("pattern", [GPT2, GPT4])
@settings(max_examples=300, deadline=None)
@given(text=lines, size=st.integers(1, 30))
def test_pieces_split_as_the_whole_text_does(pattern, text, size):
    pieces = list(cut_text(text, pattern, size))
    assert "".join(pieces) == text
    assert [c for piece in pieces for c in regex.findall(pattern, piece)] == regex.findall(pattern, text)


def test_text_is_cut_only_after_a_newline_between_visible_characters():
    text = "one\n two\n\nthree\nfour\n"
    assert list(cut_text(text, GPT4, 1)) == ["one\n two\n\nthree\n", "four\n"]
    assert list(cut_text(text, r"\w+|\W+", 1)) == [text]  # a pattern of one's own: never cut
    assert len(list(cut_text("a\nb" * 1000, GPT2, 100))) == 30


def test_huge_texts_encode_in_pieces_as_tiktoken_does(gpt2, reference, shakespeare, monkeypatch):
    monkeypatch.setattr(bpe_encode, "PIECE_CHARS", 5_000)
    fresh = BPETokenizer(gpt2.merges, gpt2.pattern, gpt2.special_tokens, gpt2.byte_ids)
    assert fresh.encode(shakespeare) == reference.encode_ordinary(shakespeare)


def test_a_chunk_that_is_a_token_is_that_token():
    """As in tiktoken; and where two tokens have the same bytes, BPE decides."""
    a, b, c = b"abc"
    merges = [(a, b), (256, c), (b, c), (a, 258)]  # 257 "abc" from "ab" + "c"; 259 "abc" again from "a" + "bc"
    tok = BPETokenizer(merges, "")
    assert tok.vocab[257] == tok.vocab[259] == b"abc"
    assert tok.encode("abc") == [257]
    assert tok.encode("bc") == [258] and tok.encode("abcbc") == [257, 258]


def test_the_cache_of_chunks_is_bounded(gpt2, reference, monkeypatch):
    monkeypatch.setattr(bpe_encode, "CACHE_SIZE", 10)
    tok = BPETokenizer(gpt2.merges, gpt2.pattern, gpt2.special_tokens, gpt2.byte_ids)
    text = " ".join(f"zq{i}xv{i * 7}" for i in range(200))
    assert tok.encode(text) == reference.encode_ordinary(text)
    assert len(tok._chunk_encoder.many_tokens) <= 10


@pytest.fixture(scope="module")
def small(shakespeare):
    return BPETokenizer.train(shakespeare[:100_000], 500, pattern="gpt4", special_tokens=["<|endoftext|>"])


def test_encode_batch_over_workers_equals_encode(small, shakespeare, monkeypatch):
    monkeypatch.setattr(bpe_module, "PARALLEL_MIN_CHARS", 0)
    texts = [shakespeare[i:i + 9_000] + "<|endoftext|>" for i in range(0, 200_000, 9_000)] + [""]
    expected = [small.encode(t, allowed_special="all") for t in texts]
    fresh = BPETokenizer(small.merges, small.pattern, small.special_tokens)
    assert fresh.encode_batch(texts, allowed_special="all", workers=2) == expected
    assert small.encode_batch(texts, allowed_special="all", workers=3) == expected  # with a warm cache


def test_encode_batch_refuses_special_tokens_from_a_worker(small, monkeypatch):
    monkeypatch.setattr(bpe_module, "PARALLEL_MIN_CHARS", 0)
    with pytest.raises(UserError, match="special token"):
        small.encode_batch(["plain text", "a<|endoftext|>b"], workers=2)
    with pytest.raises(UserError, match="allowed_special must be"):
        small.encode_batch(["a", "b"], allowed_special="some", workers=2)
