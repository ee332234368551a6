"""`nanostack tokenizer ...` and BPE tokenizers in runs (`train --tokenizer bpe:N | gpt2 | FILE.json`)."""
import json

import pytest

from testkit import TINY, run_cli, run_nanostack, shared_file
from nanostack.sample import load_run
from nanostack.tokenizer import BPETokenizer, load_tokenizer
from nanostack.tokenizer.inspect import show_html, show_terminal, token_stats
from nanostack.train import train

quiet = lambda *a: None  # noqa: E731


def test_train_encode_decode_show_stats(capsys, corpus, tmp_path):
    out = tmp_path / "tok.json"
    code, stdout, _ = run_cli(capsys, "tokenizer", "train", "--data", corpus, "--vocab-size", 300,
                              "--special", "<|eot|>", "--out", out)
    assert code == 0
    tok = BPETokenizer.load(out)
    assert tok.vocab_size == 300 and tok.special_tokens == {"<|eot|>": 299}
    assert "merges on" in stdout and "saved" in stdout

    ids = run_cli(capsys, "tokenizer", "encode", "--tokenizer", out, "the lazy dog")[1].split()
    assert [int(i) for i in ids] == tok.encode("the lazy dog")
    assert run_cli(capsys, "tokenizer", "decode", "--tokenizer", out, *ids)[1] == "the lazy dog\n"

    shown = run_cli(capsys, "tokenizer", "show", "--tokenizer", out, "the lazy dog", "--html", tmp_path / "t.html")[1]
    assert "\x1b" not in shown and shown.startswith("[") and " ".join(ids) in shown  # a pipe gets no colour codes
    coloured = run_cli(capsys, "tokenizer", "show", "--tokenizer", out, "the lazy dog", "--color", "always")[1]
    assert coloured.count("\x1b[48;5;") == len(ids) and " ".join(ids) in coloured
    page = (tmp_path / "t.html").read_text()
    assert page.count("<span") == len(ids) and "lazy" in page

    code, stats, _ = run_cli(capsys, "tokenizer", "stats", "--tokenizer", out, "--data", corpus, "--top", 3)
    assert code == 0 and "bytes per token" in stats and "never used" in stats
    (tmp_path / "in.txt").write_text("the lazy dog")
    assert run_cli(capsys, "tokenizer", "encode", "--tokenizer", out, "--file", tmp_path / "in.txt")[1].split() == ids


def test_tokenizer_command_errors_are_one_line(capsys, corpus, tmp_path):
    existing = tmp_path / "tok.json"
    existing.write_text("keep me")
    cases = [
        (("tokenizer", "train", "--data", corpus, "--vocab-size", 100, "--out", tmp_path / "a.json"), "too small"),
        (("tokenizer", "train", "--data", corpus, "--out", existing), "already exists"),
        (("tokenizer", "train", "--data", corpus, "--out", tmp_path / "a.txt"), "should be a .json file"),
        (("tokenizer", "encode", "--tokenizer", "bpe:300", "hi"), "made from data"),
        (("tokenizer", "encode", "--tokenizer", tmp_path / "none.json", "hi"), "does not exist"),
        (("tokenizer", "encode", "--tokenizer", existing, "hi"), "corrupt"),
        (("tokenizer", "decode", "x"), "whole numbers"),
        (("tokenizer", "show", "--tokenizer", existing), "no text given"),
        (("tokenizer", "show", "--file", tmp_path / "nothing.txt"), "does not exist"),
    ]
    for args, message in cases:
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert existing.read_text() == "keep me"
    done = run_nanostack("tokenizer", "decode", "x")  # and as a process: one line, no traceback
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_gpt2_through_the_cli(capsys):
    shared_file("gpt2.tiktoken")
    assert run_cli(capsys, "tokenizer", "encode", "hello world")[1].split() == ["31373", "995"]
    assert run_cli(capsys, "tokenizer", "decode", "31373", "995")[1] == "hello world\n"
    code, _, err = run_cli(capsys, "tokenizer", "encode", "a<|endoftext|>")
    assert code == 2 and "'<|endoftext|>'" in err
    allowed = run_cli(capsys, "tokenizer", "encode", "--allowed-special", "all", "a<|endoftext|>")[1]
    assert allowed.split()[-1] == "50256"


def test_inspection_functions_show_partial_characters_as_hex():
    tok = BPETokenizer.train("plain ascii text only", 260, pattern="gpt4")
    assert "<f0 9f 99 82>" not in show_terminal(tok, "🙂")  # four byte tokens, one byte each:
    assert "<f0>" in show_terminal(tok, "🙂") and "&lt;82&gt;" in show_html(tok, "🙂")
    stats = token_stats(tok, "plain text")
    assert stats["tokens"] < len("plain text") and stats["tokens_used"] + stats["tokens_unused"] == tok.vocab_size


def test_train_with_a_bpe_tokenizer_stores_it_and_samples_with_it(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(corpus), "tokenizer": "bpe:300", "max_iters": 10}, log=quiet)
    tok = load_tokenizer(out / "tokenizer.json")
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == 300
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["vocab_size"] == 300
    model, loaded = load_run(out)
    assert loaded.merges == tok.merges
    done = run_nanostack("sample", out, "--prompt", "the", "--max-new-tokens", 20)
    assert done.returncode == 0 and done.stdout.startswith("the")

    # the run's tokenizer file can prepare another run: same ids, cached under the file's content
    again = tmp_path / "again"
    train(again, {**TINY, "data": str(corpus), "tokenizer": str(out / "tokenizer.json"), "max_iters": 10}, log=quiet)
    assert load_tokenizer(again / "tokenizer.json").merges == tok.merges


def test_bpe_shards_are_trained_on_the_train_split_only(tmp_path):
    from nanostack.data import prepare_shards

    text = "alpha beta gamma " * 300 + "zzzzqqqq " * 40  # the last 10% (val) alone holds z and q
    (tmp_path / "t.txt").write_text(text)
    shards = prepare_shards(str(tmp_path / "t.txt"), "bpe:280", log=quiet)
    assert all(b"zz" not in token and b"qq" not in token for token in shards.tokenizer.vocab)
    assert shards.tokenizer.decode(list(shards.val)) == text[int(len(text) * 0.9):]


def test_gpt2_tokenizer_for_a_run(tmp_path):
    shakespeare = shared_file("tinyshakespeare.txt")
    from nanostack.data import prepare_shards

    shards = prepare_shards(str(shakespeare), "gpt2", log=quiet)
    assert (len(shards.train), len(shards.val)) == (301_966, 36_059)  # nanoGPT's shakespeare (BPE) figures
    assert shards.meta["vocab_size"] == 50257 and shards.train.dtype.name == "uint16"


@pytest.mark.parametrize("spec, message", [("bpe:12", "at least 256"), ("bpe:x", "at least 256"),
                                           ("wordpiece", "unknown tokenizer"), ("missing.json", "does not exist")])
def test_bad_tokenizer_specs_for_a_run(capsys, corpus, tmp_path, spec, message):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--data", corpus, "--tokenizer", spec)
    assert code == 2 and message in err
    assert not (tmp_path / "run").exists()
