"""Byte-level BPE: GPT-2 ids equal tiktoken's, training equals rustbpe's, files and special tokens."""
import json

import pytest
import regex
import rustbpe
from hypothesis import given, settings
from hypothesis import strategies as st

from testkit import gpt2, reference, shared_file  # noqa: F401 (gpt2, reference: fixtures)
from nanostack.errors import UserError
from nanostack.tokenizer import BPETokenizer, load_tokenizer
from nanostack.tokenizer import bpe as bpe_module
from nanostack.tokenizer.patterns import GPT2, GPT4, FastSplitter, compile_pattern

TEXT = "Hello, world! It's 2026: naïve café — 日本語 🙂🙂 e\u0301\n\n\tdone   now 12345 ok?!"


@pytest.fixture(scope="module")
def shakespeare():
    return shared_file("tinyshakespeare.txt").read_text(encoding="utf-8")


def test_gpt2_hello_world(gpt2):
    assert gpt2.encode("hello world") == [31373, 995]
    assert gpt2.vocab_size == 50257 and gpt2.decode([31373, 995]) == "hello world"


def test_gpt2_equals_tiktoken_on_tinyshakespeare(gpt2, reference, shakespeare):
    ids = gpt2.encode(shakespeare)
    assert len(ids) == 338_025
    assert ids == reference.encode_ordinary(shakespeare)
    assert gpt2.decode(ids) == shakespeare


# Characters unassigned in Python's Unicode tables (14.0 on 3.11) are left out: engines built on other
# Unicode versions disagree on them. The regex module (Unicode 17) reads U+323B0 (CJK Extension J) as a
# letter and tiktoken does not, so "\U000323b0's" splits differently; there is no one right answer.
unicode_text = st.lists(
    st.one_of(
        st.characters(codec="utf-8", exclude_categories=["Cn"]),  # control characters and combining marks included
        st.sampled_from(list(" \t\n\r  0123456789'sdtmlvre") + ["🙂", "👩‍👩‍👧", "日本", "é", "e\u0301", "\u200d",
                                                                   "'s", "'ll", "   ", "\r\n"]),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(unicode_text)
def test_gpt2_equals_tiktoken_on_generated_unicode(gpt2, reference, text):
    ids = gpt2.encode(text, allowed_special="none")
    assert ids == reference.encode_ordinary(text)
    assert gpt2.decode(ids) == text


@pytest.mark.parametrize("pattern", [GPT2, GPT4])
@settings(max_examples=300, deadline=None)
@given(text=st.one_of(unicode_text, st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]))))
def test_fast_splitter_cuts_as_regex_does(pattern, text):
    """re on spelled-out classes (16-bit text) and regex (the rest) agree with regex everywhere."""
    splitter = compile_pattern(pattern)
    assert isinstance(splitter, FastSplitter)
    assert splitter.findall(text) == regex.findall(pattern, text)


@pytest.fixture(scope="module")
def small():
    """A small BPE trained on mixed text, with a special token."""
    corpus = (TEXT * 3 + "the cat sat on the mat. the dog ate the hat!\n" * 20 + "0123 4567 89 " * 10)
    return BPETokenizer.train(corpus, 256 + 60, pattern="gpt4", special_tokens=["<|endoftext|>"])


@settings(max_examples=200, deadline=None)
@given(unicode_text)
def test_decode_encode_round_trips_any_string(small, text):
    assert small.decode(small.encode(text, allowed_special="none")) == text


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2", None])
@pytest.mark.parametrize("vocab_size", [300, 700])
def test_training_equals_rustbpe(pattern, vocab_size, shakespeare):
    text = shakespeare[:200_000 if pattern else 20_000]  # without a pattern the text is one long chunk
    ours = BPETokenizer.train(text, vocab_size, pattern=pattern)
    theirs = rustbpe.Tokenizer()
    theirs.train_from_iterator([text], vocab_size, pattern={"gpt4": GPT4, "gpt2": GPT2, None: r"[\s\S]+"}[pattern])
    expected = [bytes(token) for token, _ in sorted(theirs.get_mergeable_ranks(), key=lambda t: t[1])]
    assert ours.vocab == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="ab c\n", max_size=40), min_size=1, max_size=6), st.integers(256, 300))
def test_training_equals_rustbpe_on_generated_documents(documents, vocab_size):
    """Runs of one letter ("aaaa"), overlapping pairs and ties in the counts, where mistakes hide."""
    ours = BPETokenizer.train(documents, vocab_size)
    theirs = rustbpe.Tokenizer()
    theirs.train_from_iterator(documents, vocab_size, pattern=GPT4)
    expected = [bytes(token) for token, _ in sorted(theirs.get_mergeable_ranks(), key=lambda t: t[1])]
    assert ours.vocab == expected


def test_training_ties_go_to_the_smallest_pair():
    tok = BPETokenizer.train("ab cd", 258, pattern=None)  # (a,b), (b,' '), (' ',c), (c,d) all count 1
    assert tok.merges == [(ord(" "), ord("c")), (ord("a"), ord("b"))]


def test_training_accepts_an_iterable_and_stops_when_pairs_run_out():
    tok = BPETokenizer.train(iter(["aaaa", "aaaa"]), 1000, pattern=None)
    assert tok.merges == [(97, 97), (256, 256)] and tok.vocab_size == 258


def test_save_and_load_round_trip(small, gpt2, tmp_path):
    for tok in (small, gpt2):
        tok.save(tmp_path / "t.json")
        again = load_tokenizer(tmp_path / "t.json")
        assert isinstance(again, BPETokenizer)
        assert (again.merges, again.pattern, again.special_tokens, again.byte_ids) == \
            (tok.merges, tok.pattern, tok.special_tokens, tok.byte_ids)
        assert again.encode(TEXT) == tok.encode(TEXT)
    d = json.loads((tmp_path / "t.json").read_text())
    assert d["kind"] == "bpe" and d["version"] == 1 and d["special_tokens"] == {"<|endoftext|>": 50256}


def test_special_tokens(small):
    eot = small.special_tokens["<|endoftext|>"]
    assert eot == small.vocab_size - 1
    text = "a cat<|endoftext|>the dog"
    with pytest.raises(UserError, match="special token '<\\|endoftext\\|>'"):
        small.encode(text)
    as_special = small.encode(text, allowed_special="all")
    assert eot in as_special and as_special == small.encode(text, allowed_special={"<|endoftext|>"})
    assert as_special == small.encode("a cat") + [eot] + small.encode("the dog")
    plain = small.encode(text, allowed_special="none")
    assert eot not in plain and small.decode(plain) == text
    assert small.decode(as_special) == text
    with pytest.raises(UserError, match="unknown special token"):
        small.encode(text, allowed_special={"<|fim|>"})
    with pytest.raises(UserError, match="allowed_special must be"):
        small.encode(text, allowed_special="sometimes")


def test_gpt2_special_token_equals_tiktoken(gpt2, reference):
    text = "end<|endoftext|>start"
    assert gpt2.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")
    assert gpt2.encode(text, allowed_special="none") == reference.encode_ordinary(text)


def test_decoding_bytes_and_invalid_utf8(gpt2):
    ids = gpt2.encode("🙂")
    assert len(ids) > 1  # the emoji's four bytes span tokens
    assert gpt2.decode_bytes(ids[:1]) == "🙂".encode()[:len(gpt2.decode_bytes(ids[:1]))]
    assert "\ufffd" in gpt2.decode(ids[:1])
    with pytest.raises(UnicodeDecodeError):
        gpt2.decode(ids[:1], errors="strict")
    with pytest.raises(UserError, match="token id 99999 is not in"):
        gpt2.decode([99999])


def test_encode_batch_equals_encode_over_processes(small, monkeypatch):
    monkeypatch.setattr(bpe_module, "PARALLEL_MIN_CHARS", 0)  # use the pool even for small texts
    texts = [TEXT * i for i in range(1, 9)]
    assert small.encode_batch(texts, workers=2) == [small.encode(t) for t in texts]


def test_to_tiktoken_gives_the_same_ids(small, gpt2, shakespeare):
    fast = small.to_tiktoken()
    assert fast.encode(TEXT * 5) == small.encode(TEXT * 5)
    assert gpt2.to_tiktoken().encode_ordinary(shakespeare[:50_000]) == gpt2.encode(shakespeare[:50_000])


@pytest.mark.parametrize("vocab_size, specials", [(255, None), (256, ["<|a|>"])])
def test_vocab_size_too_small_is_a_clear_error(vocab_size, specials):
    with pytest.raises(UserError, match=f"vocab_size {vocab_size} is too small.*at least {256 + len(specials or [])}"):
        BPETokenizer.train("hello", vocab_size, special_tokens=specials)


@pytest.mark.parametrize("content, message", [
    ('{"kind": "bpe", "version": 1}', "malformed"),
    ('{"kind": "bpe", "version": 7, "merges": []}', "format version 7"),
    ('{"kind": "bpe", "version": 1, "merges": [[300, 1]]}', "does not exist yet"),
    ('{"kind": "bpe", "version": 1, "merges": [["a"]]}', "malformed"),
    ('{"kind": "bpe", "version": 1, "merges": [], "pattern": "(unclosed"}', "not a valid regex"),
    ('{"kind": "bpe", "version": 1, "merges": [], "byte_ids": [0, 0]}', "not a permutation"),
    ("[1, 2]", "not a JSON object"),
])
def test_malformed_tokenizer_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        BPETokenizer.load(path)


@pytest.mark.parametrize("content, message", [
    (b"not-base64!! 0\n", "is not 'base64-token rank'"),
    (b"IQ== 0\nIQ== 1\n", "ranks are not"),
    (b"IQ== 0\n", "single bytes are not"),
])
def test_malformed_ranks_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "r.tiktoken"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        BPETokenizer.from_tiktoken(path)


def test_gpt2_merges_are_derived_once_then_read_from_the_cache(tmp_path, monkeypatch, shakespeare):
    """Recovering merges from a ranks file is most of `tokenizer encode`'s start-up: the second load
    reads them from the cache, and gets the same tokenizer; a damaged cache entry is derived again."""
    from nanostack.tokenizer import tiktoken_files

    monkeypatch.setenv("NANOSTACK_CACHE_DIR", str(tmp_path))
    ranks = shared_file("gpt2.tiktoken")
    derived = BPETokenizer.from_tiktoken(ranks)
    [entry] = (tmp_path / "tiktoken_merges").iterdir()
    last_merge = tiktoken_files._last_merge

    def refuse(*args):
        raise AssertionError("merges derived again instead of read from the cache")

    monkeypatch.setattr(tiktoken_files, "_last_merge", refuse)
    cached = BPETokenizer.from_tiktoken(ranks)
    assert cached.merges == derived.merges and cached.byte_ids == derived.byte_ids
    assert cached.encode(shakespeare[:5000]) == derived.encode(shakespeare[:5000])
    monkeypatch.setattr(tiktoken_files, "_last_merge", last_merge)
    entry.write_text('{"merges": [[1, 2]], "byte_ids": [0]}')  # damaged: derived again, and rewritten
    assert BPETokenizer.from_tiktoken(ranks).merges == derived.merges
    assert len(json.loads(entry.read_text())["merges"]) == len(derived.merges)
