"""One tokenizer interface: char and byte-level BPE give the same special-token rules, the same files,
and the same encode/decode contract; split patterns never drop text; a spec is parsed once."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanostack.errors import UserError
from nanostack.tokenizer import BPETokenizer, CharTokenizer, Tokenizer, TokenizerSpec, load_tokenizer

TEXT = "the cat sat on the mat. <|endoftext|> a dog! 🙂\n"
SPECIALS = ["<|endoftext|>", "<|user|>"]


def make(kind) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.from_text(TEXT, special_tokens=SPECIALS)
    return BPETokenizer.train(TEXT * 20, 256 + 20 + len(SPECIALS), special_tokens=SPECIALS)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_special_tokens_follow_one_set_of_rules(kind):
    tok = make(kind)
    eot, user = tok.special_id("<|endoftext|>"), tok.special_id("<|user|>")
    assert tok.vocab_size == max(eot, user) + 1 and eot >= tok.ordinary_vocab_size and user == eot + 1
    with pytest.raises(UserError, match="special token '<\\|endoftext\\|>', which is not allowed"):
        tok.encode(TEXT)
    as_special = tok.encode(TEXT, allowed_special="all")
    assert as_special.count(eot) == 1 and as_special == tok.encode(TEXT, allowed_special={"<|endoftext|>"})
    plain = tok.encode(TEXT, allowed_special="none")
    assert eot not in plain and plain == tok.encode_ordinary(TEXT)
    assert tok.decode(as_special) == tok.decode(plain) == TEXT  # a special id decodes to its text
    with pytest.raises(UserError, match="unknown special token"):
        tok.encode(TEXT, allowed_special={"<|fim|>"})
    with pytest.raises(UserError, match="allowed_special must be one of"):
        tok.encode(TEXT, allowed_special="sometimes")
    with pytest.raises(UserError, match="has no special token"):
        tok.special_id("<|fim|>")


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_registering_adds_ids_after_every_existing_one(kind):
    tok = make(kind)
    before = tok.vocab_size
    assert tok.register_special_tokens(["<|user|>", "<|tool|>"]) == [tok.special_id("<|user|>"), before]
    assert tok.vocab_size == before + 1 and tok.decode([before]) == "<|tool|>"
    assert tok.encode("<|tool|>", allowed_special="all") == [before]


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_and_load_keep_everything(kind, tmp_path):
    tok = make(kind)
    tok.save(tmp_path / "t.json")
    again = load_tokenizer(tmp_path / "t.json")
    assert type(again) is type(tok) and again.to_dict() == tok.to_dict()
    assert again.encode(TEXT, allowed_special="all") == tok.encode(TEXT, allowed_special="all")
    assert again.decode_bytes(range(again.vocab_size)) == tok.decode_bytes(range(tok.vocab_size))


def test_char_files_without_special_tokens_stay_as_they_were(tmp_path):
    tok = CharTokenizer.from_text("abc")
    assert tok.to_dict() == {"kind": "char", "version": 1, "chars": "abc"}  # older runs' files read the same


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_bad_ids_and_bad_special_ids_are_clear_errors(kind):
    tok = make(kind)
    with pytest.raises(UserError, match="not in this tokenizer's vocabulary"):
        tok.decode([tok.vocab_size + 5])
    with pytest.raises(UserError, match="which an ordinary token already uses"):
        type(tok).from_dict({**tok.to_dict(), "special_tokens": {"<|x|>": 0}})


def test_pattern_none_means_no_splitting():
    text = "hello world, hello there. " * 30
    learned = BPETokenizer.train(text, 300, pattern="none")
    assert learned.pattern == "" and len(learned.merges) > 20  # "none" learned merges (it used to learn none)
    assert learned.merges == BPETokenizer.train(text, 300, pattern=None).merges
    ids = learned.encode("a new text, not in training")
    assert ids and learned.decode(ids) == "a new text, not in training"


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=60), pattern=st.sampled_from([r"[a-z]+", r"\d", r"(?=x)", r"\s+|[A-Z]", "none"]))
def test_no_split_pattern_ever_drops_text(text, pattern):
    tok = BPETokenizer.train("abc abc xyz 123 ABC " * 5 + text, 280, pattern=pattern)
    assert tok.decode(tok.encode_ordinary(text)) == text


def test_a_spec_is_parsed_once_into_a_value(tmp_path):
    spec = TokenizerSpec.parse("bpe:4096")
    assert (spec.kind, spec.vocab_size, spec.made_from_data) == ("bpe", 4096, True)
    assert TokenizerSpec.parse(spec) is spec
    make("char").save(tmp_path / "t.json")
    from_file = TokenizerSpec.parse(str(tmp_path / "t.json"))
    assert from_file.kind == "file" and from_file.open().chars == make("char").chars
    assert from_file.cache_key() != TokenizerSpec.parse("char").cache_key()
    for bad, message in (("bpe:12", "at least 256"), ("wordpiece", "unknown tokenizer"), ("", "not a tokenizer")):
        with pytest.raises(UserError, match=message):
            TokenizerSpec.parse(bad)
    with pytest.raises(UserError, match="made from data"):
        TokenizerSpec.parse("char").open()
