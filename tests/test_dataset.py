"""The one Dataset interface, on all three kinds: stable example ids, places in the source, an exact
pass whose rows line up with the examples, block sizes checked in one place, reopening a run's data."""
import numpy as np
import pytest
import torch

from testkit import TINY, run_cli, shared_file
from nanostack.data import example_id, open_dataset
from nanostack.data.examples import segment
from nanostack.errors import UserError
from nanostack.run import open_run
from nanostack.train import train

quiet = lambda *a, **k: None  # noqa: E731
WORDS = ["olivia", "emma", "ava", "sophia", "isabella", "mia", "amelia", "harper", "evelyn", "abigail", "emily",
         "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila", "aria", "scarlett"]


@pytest.fixture
def folder(tmp_path):
    """Two documents: lines in paragraphs of one or two, an indented first line, repeats."""
    root = tmp_path / "data"
    root.mkdir()
    pairs = "\n\n".join("\n".join(WORDS[i:i + 2]) for i in range(0, 12, 2))
    (root / "a.txt").write_text(pairs + "\n \t\nolivia\nemma\n", encoding="utf-8")
    (root / "b.txt").write_text("  " + "\n\n".join(WORDS[12:]) + "\n\n\n" + "emma\n", encoding="utf-8")
    return root


def datasets(folder, corpus, paragraphs_file):
    return {"stream": open_dataset(str(corpus), "char", "stream", log=quiet),
            "lines": open_dataset(str(folder), "char", "lines", seed=1),
            "paragraphs": open_dataset(str(paragraphs_file), "char", "paragraphs", seed=1)}


@pytest.fixture
def paragraphs_file(tmp_path):
    path = tmp_path / "poems.txt"
    rng = np.random.default_rng(0)
    poems = ["\n".join(" ".join(rng.choice(WORDS, 3)) for _ in range(rng.integers(1, 4))) for _ in range(40)]
    path.write_text("\n\n".join(poems) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["stream", "lines", "paragraphs"])
def test_examples_have_content_ids_and_rows_that_line_up(kind, folder, corpus, paragraphs_file):
    data = datasets(folder, corpus, paragraphs_file)[kind]
    block = data.block_size(None)
    for split in ("train", "val"):
        examples = data.examples(split, block)
        assert [e.index for e in examples] == list(range(len(examples)))
        assert all(e.id == example_id(e.text) for e in examples)
        rows = 0
        for batch_rows, x, y in data.batches(split, block):
            assert list(batch_rows) == list(range(rows, rows + len(x)))
            for e, xr, yr in zip(examples[batch_rows.start:batch_rows.stop], x, y):
                targets = yr[yr != -1].tolist()
                if kind == "stream":  # a window: its inputs, then its last target
                    assert data.tokenizer.decode(xr[:len(targets)].tolist() + targets[-1:]) == e.text
                else:  # boundary + example -> example + boundary
                    assert data.tokenizer.decode(targets[:-1]) == e.text
                    assert targets[-1] == xr[0] == data.boundary_id
            rows += len(x)
        assert rows == len(examples)


def test_a_stream_pass_predicts_every_token_once(corpus):
    data = open_dataset(str(corpus), "char", "stream", log=quiet)
    for block in (16, 7):
        targets = torch.cat([y[y != -1] for _, _, y in data.batches("val", block, batch_size=5)])
        assert targets.tolist() == data.val[1:].tolist()


def test_places_point_into_the_source(folder):
    for kind, data in (("lines", open_dataset(str(folder), "char", "lines", seed=1)),
                       ("paragraphs", open_dataset(str(folder), "char", "paragraphs", seed=1))):
        examples = data.examples("train") + data.examples("test")
        assert len(examples) == len(segment([(p.name, p.read_text()) for p in sorted(folder.iterdir())], kind))
        for e in examples:
            assert (folder / e.source).read_text()[e.offset:].startswith(e.text), (kind, e)


def test_the_same_text_has_the_same_id_in_any_dataset(folder, tmp_path):
    one = open_dataset(str(folder), "char", "lines", seed=1)
    (folder / "c.txt").write_text("\n".join(f"new{i}" for i in range(30)) + "\n", encoding="utf-8")
    other = open_dataset(str(folder), "char", "lines", seed=7)
    ids = {e.text: e.id for split in ("train", "test") for e in one.examples(split)}
    again = {e.text: e.id for split in ("train", "test") for e in other.examples(split)}
    assert ids and all(again[text] == i for text, i in ids.items())
    assert one.data_hash != other.data_hash


def test_paragraphs_and_lines_of_the_builtin_data():
    shared_file("tinyshakespeare.txt")
    shared_file("names.txt")
    paragraphs = open_dataset("shakespeare", "char", "paragraphs")
    texts = paragraphs.train_words + paragraphs.test_words
    assert len(texts) == 7222 and len(texts) - len(set(texts)) == 74  # the data engine spec's counts
    assert paragraphs.tokenizer.special_tokens == {"<|endoftext|>": 65}  # 65 characters, then the boundary
    names = open_dataset("names", "char", "lines", seed=3407)
    assert len(names.train_words) + len(names.test_words) == 32033 and names.heldout_in_train() == 153


def test_an_explicit_block_size_is_kept_and_long_examples_left_out_with_a_note(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(WORDS * 2 + ["x" * 500]) + "\n", encoding="utf-8")
    assert open_dataset(str(path), "char", "lines").block_size(None) == 501  # the data's own: longest + 1
    notes = []
    data = open_dataset(str(path), "char", "lines")
    assert data.block_size(16, log=notes.append) == 16
    assert len(notes) == 1 and "1 example(s)" in notes[0] and "Raise --block-size" in notes[0]
    assert "x" * 500 not in data.train_words + data.test_words
    assert data.tensors("train")[0].shape[1] == max(map(len, WORDS)) + 1


def test_a_stream_too_short_for_its_block_is_one_clear_error(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abcdefghij" * 3, encoding="utf-8")
    data = open_dataset(str(path), "char", "stream", log=quiet)
    with pytest.raises(UserError, match="val split of .* has 3 tokens, fewer than one block of 16"):
        data.block_size(16)
    assert data.block_size(2) == 2


def test_eval_reopens_a_stream_run_with_its_own_tokenizer_and_checks_the_data(capsys, corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(corpus), "tokenizer": "bpe:300"}, log=quiet)
    code, first, _ = run_cli(capsys, "eval", out)
    assert code == 0 and "val NLL per token" in first
    monkeypatch.setenv("NANOSTACK_CACHE_DIR", str(tmp_path / "empty-cache"))  # the shards must be made again
    code, again, _ = run_cli(capsys, "eval", out)
    assert code == 0 and again == first  # with the run's own tokenizer: the same ids, the same loss
    assert open_run(out).dataset().tokenizer.to_dict() == open_run(out).tokenizer().to_dict()
    corpus.write_text(corpus.read_text(encoding="utf-8") + " zebra", encoding="utf-8")
    code, _, err = run_cli(capsys, "eval", out)
    assert code == 2 and "has changed since this run started" in err


def test_paragraph_runs_train_sample_and_evaluate(capsys, paragraphs_file, tmp_path):
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(paragraphs_file), "examples": "paragraphs", "block_size": 0}, log=quiet)
    config = open_run(out).config
    assert config["data_mode"] == "paragraphs" and config["examples"]["boundary"] == "<|endoftext|>"
    code, stdout, _ = run_cli(capsys, "sample", out, "--num-samples", 3)
    assert code == 0 and stdout.rstrip().splitlines()[-1].startswith("--- ") and "<|endoftext|>" not in stdout
    code, stdout, _ = run_cli(capsys, "eval", out, "--splits", "train,test")
    assert code == 0 and "train NLL per token" in stdout and "test NLL per token" in stdout


def test_lines_can_use_a_bpe_tokenizer(capsys, tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(WORDS * 3) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    train(out, {**TINY, "data": str(path), "examples": "lines", "tokenizer": "bpe:270", "block_size": 0}, log=quiet)
    run = open_run(out)
    assert run.tokenizer().kind == "bpe" and run.example_boundary == "\n"
    code, stdout, _ = run_cli(capsys, "sample", out, "--num-samples", 4)
    assert code == 0 and len(stdout.splitlines()) == 5
