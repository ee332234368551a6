"""makemore: line-per-example data, the model family, and train / sample / eval on examples."""
import math
from collections import Counter

import pytest
import torch

from testkit import run_cli, shared_file
from nanostack.data import read_examples
from nanostack.data.examples import encode_examples
from nanostack.models import KINDS, BigramCounts, ModelConfig, build
from nanostack.models.rnn import GRUCell, LSTMCell, RNNCell
from nanostack.tokenizer import CharTokenizer
from nanostack.train import train

WORDS = ["olivia", "emma", "ava", "sophia", "isabella", "mia", "amelia", "harper", "evelyn", "abigail",
         "emily", "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila", "aria", "scarlett"]
quiet = lambda *a: None  # noqa: E731


@pytest.fixture
def names_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(WORDS * 3) + "\n\n   \n")  # blank lines are skipped
    return path


def tensors(words, block_size=None):
    tok = CharTokenizer.from_text("\n" + "".join(words))
    block = block_size or max(map(len, words)) + 1
    return tok, *encode_examples(words, tok, block, int(tok.encode("\n")[0]))


def test_examples_are_wrapped_padded_and_masked():
    tok, x, y = tensors(["ab", "c"])
    nl = int(tok.encode("\n")[0])
    a, b, c = (int(tok.encode(ch)[0]) for ch in "abc")
    assert x.tolist() == [[nl, a, b], [nl, c, nl]]
    assert y.tolist() == [[a, b, nl], [c, nl, -1]]


def test_split_is_deterministic_by_seed_and_sized_like_makemores(names_file):
    a, b, c = (read_examples(str(names_file), seed) for seed in (1, 1, 2))
    assert (a.train_words, a.test_words) == (b.train_words, b.test_words) != (c.train_words, c.test_words)
    assert len(a.test_words) == len(WORDS) * 3 // 10 and len(a.train_words) + len(a.test_words) == len(WORDS) * 3
    assert a.overlap() == sum(w in set(a.train_words) for w in a.test_words) > 0  # the file repeats names
    assert a.block_size(None) == max(map(len, WORDS)) + 1


def test_names_split_equals_makemores():
    shared_file("names.txt")
    examples = read_examples("names", 3407)
    assert len(examples.test_words) == 1000 and len(examples.train_words) == 32033 - 1000
    assert examples.test_words[:5] == ["kalub", "shaima", "sthefany", "jakyri", "emanuella"]  # makemore, seed 3407


def test_too_few_examples_is_a_clear_error(tmp_path):
    (tmp_path / "few.txt").write_text("a\nb\n")
    from nanostack.errors import UserError
    with pytest.raises(UserError, match="needs at least 10"):
        read_examples(str(tmp_path / "few.txt"), 0)


@pytest.mark.parametrize("smoothing", [0.5, 1.0])
def test_counting_bigram_nll_equals_the_analytic_value(smoothing):
    train_words, test_words = WORDS[:15], WORDS[15:]
    tok, x, y = tensors(train_words + test_words)
    model = BigramCounts(ModelConfig(vocab_size=tok.vocab_size, kind="bigram_counts"), smoothing=smoothing)
    model.fit(x[:15], y[:15])
    # by hand: count the pairs of "\n" + word + "\n", smooth, normalise, average -log p over the test pairs
    counts = Counter((p, q) for w in train_words for p, q in zip("\n" + w, w + "\n"))
    row_total = {p: sum(counts[(p, q)] + smoothing for q in tok.chars) for p in tok.chars}
    test_pairs = [(p, q) for w in test_words for p, q in zip("\n" + w, w + "\n")]
    expected = -sum(math.log((counts[(p, q)] + smoothing) / row_total[p]) for p, q in test_pairs) / len(test_pairs)
    _, loss = model(x[15:], y[15:])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def tiny_config(kind, tok, block_size, **kw):
    return ModelConfig(vocab_size=tok.vocab_size, block_size=block_size, kind=kind, n_layer=2, n_head=2, n_embd=16,
                       n_embd2=32, **kw)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "bigram_counts"])
def test_every_model_overfits_a_tiny_batch(kind):
    tok, x, y = tensors(["olivia", "sophia"])
    torch.manual_seed(0)
    model = build(tiny_config(kind, tok, x.size(1), batchnorm=kind in ("mlp", "wavenet")))
    # a bigram's logits must grow large for its certain transitions: a bigger step gets there sooner
    opt = torch.optim.AdamW(model.parameters(), lr=0.2 if kind == "bigram" else 1e-2, weight_decay=0.0)
    for _ in range(300):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if kind == "bigram":  # a bigram can do no better than the counts of the batch itself
        floor = BigramCounts(tiny_config("bigram_counts", tok, x.size(1)), smoothing=0.0)
        floor.fit(x, y)
        assert loss.item() == pytest.approx(floor(x, y)[1].item(), abs=0.01)
    else:  # only the first letter is a guess ("\n" -> "o" or "s"): 2 log(2) over 14 targets is the floor
        assert loss.item() < 2 * math.log(2) / 14 + 0.02


@pytest.mark.parametrize("ours, theirs", [(RNNCell, torch.nn.RNNCell), (GRUCell, torch.nn.GRUCell),
                                          (LSTMCell, torch.nn.LSTMCell)])
def test_written_out_cells_equal_torchs(ours, theirs):
    torch.manual_seed(0)
    reference = theirs(5, 7).double()
    cell = ours(5, 7).double()
    cell.load_state_dict(reference.state_dict())  # same names, same gate layout
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, 7, dtype=torch.float64)
    state = (h, torch.randn(3, 7, dtype=torch.float64)) if ours is LSTMCell else h
    out, expected = cell(x, state), reference(x, state)
    out, expected = (torch.cat(o, 1) if isinstance(o, tuple) else o for o in (out, expected))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = torch.autograd.grad(out.square().sum(), [x, *cell.parameters()])
    grad_ref = torch.autograd.grad(expected.square().sum(), [x, *reference.parameters()])
    for a, b in zip(grad, grad_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind, batchnorm", [(k, False) for k in KINDS] + [("mlp", True), ("wavenet", True)])
def test_masked_padding_does_not_change_the_loss(kind, batchnorm):
    """More padding, or other tokens in the padded places, leave the loss as it was."""
    tok, x, y = tensors(["ava", "isabella", "mia"])
    torch.manual_seed(0)
    model = build(tiny_config(kind, tok, 16, batchnorm=batchnorm))
    if kind == "bigram_counts":
        model.fit(x, y)
    model.train()
    _, loss = model(x, y)
    wider_x = torch.cat([x, torch.randint(tok.vocab_size, (3, 5))], 1)  # junk tokens in 5 more padded places
    wider_y = torch.cat([y, torch.full((3, 5), -1)], 1)
    junk_x = torch.where(y == -1, torch.randint(tok.vocab_size, x.shape), x)  # junk where x is padding
    for px, py in ((wider_x, wider_y), (junk_x, y)):
        _, padded_loss = model(px, py)
        assert padded_loss.item() == pytest.approx(loss.item(), rel=1e-6), (kind, px.shape)


def test_train_sample_and_eval_on_a_lines_file(capsys, names_file, tmp_path):
    out = tmp_path / "run"
    settings = {"data": str(names_file), "examples": "lines", "model": "gru", "n_embd": 16, "n_embd2": 32,
                "batch_size": 8, "max_iters": 40, "eval_interval": 20, "eval_iters": 2, "ckpt_interval": 20,
                "warmup_iters": 0, "device": "cpu"}
    summary = train(out, settings, log=quiet)
    assert summary["step"] == 40
    code, stdout, _ = run_cli(capsys, "sample", out, "--num-samples", 6, "--seed", 3)
    lines = stdout.splitlines()
    assert code == 0 and len(lines) == 7 and lines[-1].startswith("--- ") and "are new" in lines[-1]
    assert all("\n" not in line for line in lines[:-1])
    code, stdout, _ = run_cli(capsys, "eval", out, "--per-example", tmp_path / "nll.tsv", "--splits", "train,test")
    assert code == 0 and "test NLL per token" in stdout and "also occur in train" in stdout
    rows = (tmp_path / "nll.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["split", "id", "source", "offset", "example", "nll_sum", "tokens", "nll_per_token"]
    assert len(rows) == 1 + len(WORDS) * 3
    per_token = [float(r.split("\t")[7]) for r in rows[1:]]
    assert per_token == sorted(per_token, reverse=True)  # hardest first
    assert {r.split("\t")[0] for r in rows[1:]} == {"train", "test"}


def test_counting_bigram_run_and_eval_are_consistent(capsys, names_file, tmp_path):
    out = tmp_path / "run"
    train(out, {"data": str(names_file), "examples": "lines", "model": "bigram_counts", "eval_iters": 2,
                "device": "cpu"}, log=quiet)
    code, stdout, _ = run_cli(capsys, "eval", out)
    examples = read_examples(str(names_file), 1337)
    model = BigramCounts(ModelConfig(vocab_size=examples.tokenizer.vocab_size, kind="bigram_counts"))
    model.fit(*examples.tensors("train"))
    expected = model(*examples.tensors("test"))[1].item()
    assert code == 0 and f"test NLL per token: {expected:.4f}" in stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "cnn"], "unknown model 'cnn'"),
    (["--examples", "lines", "--tokenizer", "bpe:12"], "at least 256"),
    (["--examples", "sometimes"], "unknown examples mode"),
    (["--backend", "numpy", "--model", "gru"], "trains the transformer and the mlp"),
    (["--backend", "numpy", "--model", "mlp", "--batchnorm"], "with batchnorm"),
])
def test_bad_makemore_settings(capsys, names_file, tmp_path, args, message):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--data", names_file, *args)
    assert code == 2 and message in err


@pytest.mark.parametrize("kind", ["mlp", "wavenet"])
def test_context_limits_how_far_back_a_model_reads(kind):
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=10, block_size=12, kind=kind, n_embd=4, n_embd2=8, context=4)).eval()
    x = torch.randint(10, (1, 12))
    changed = x.clone()
    changed[0, 3] = (x[0, 3] + 1) % 10  # position 3 is within reach of positions 3..6 only
    a, b = model(x)[0], model(changed)[0]
    assert torch.equal(a[0, :3], b[0, :3]) and torch.equal(a[0, 7:], b[0, 7:])
    assert not torch.equal(a[0, 3:7], b[0, 3:7])


@pytest.mark.parametrize("kind", ["bigram", "bigram_counts", "lstm"])
def test_makemore_models_train_and_sample_on_a_stream_too(capsys, corpus, tmp_path, kind):
    out = tmp_path / "run"
    train(out, {"data": str(corpus), "model": kind, "n_embd": 8, "n_embd2": 16, "block_size": 16, "batch_size": 4,
                "max_iters": 10, "eval_interval": 5, "eval_iters": 2, "ckpt_interval": 5, "device": "cpu"},
          log=quiet)
    code, stdout, _ = run_cli(capsys, "sample", out, "--prompt", "the", "--max-new-tokens", 20)
    assert code == 0 and stdout.startswith("the") and len(stdout) == len("the") + 20 + 1
    code, _, err = run_cli(capsys, "sample", tmp_path / "run", "--temperature", -1)
    assert code == 2 and "temperature" in err
