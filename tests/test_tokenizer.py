import pytest

from nanostack.errors import UserError
from nanostack.tokenizer import CharTokenizer, load_tokenizer

TEXT = "Hello, world!\n\tÜnïcödé — 日本語 🙂 and combining e\u0301"


def test_round_trip():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    assert len(ids) == len(TEXT)
    assert tok.vocab_size == len(set(TEXT))


def test_ids_are_positions_in_sorted_vocabulary():
    tok = CharTokenizer.from_text("cab")
    assert tok.encode("abcab") == [0, 1, 2, 0, 1]


def test_unknown_character_is_a_clear_error():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UserError, match="not in the vocabulary: 'z'"):
        tok.encode("abz")


def test_save_and_load(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    tok.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.chars == tok.chars
    assert again.encode(TEXT) == tok.encode(TEXT)


def test_load_rejects_a_foreign_file(tmp_path):
    (tmp_path / "t.json").write_text('{"kind": "wordpiece"}')
    with pytest.raises(UserError, match="unknown kind"):
        load_tokenizer(tmp_path / "t.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        load_tokenizer(tmp_path / "bad.json")
