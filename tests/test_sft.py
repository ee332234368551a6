"""Supervised fine-tuning: only the assistant's tokens are learned (the loss is the hand-computed
mean over them; a user token changes no target), a batch with nothing to learn is skipped (no NaN, no
weight moves), conversations that fit are packed whole, and --init starts from a base run's weights
with the chat tokens added."""
import json
import math
import random

import pytest
import torch
from safetensors.torch import load_file

from testkit import TINY, flags
from nanostack.cli import main
from nanostack.data import open_dataset
from nanostack.data.chat_format import CHAT_TOKENS, parse_messages, render
from nanostack.data.conversations import Conversations, pack
from nanostack.models import ModelConfig, build
from nanostack.models.engines import build_model
from nanostack.run import open_run


def conversation(rng, i):
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    reply = [{"type": "tool_call", "tool": "calculator", "input": f"{a}*{b}"},
             {"type": "tool_output", "output": str(a * b)}, {"type": "text", "text": f"it is {a * b}"}]
    messages = [{"role": "user", "content": f"what is {a} times {b}? " + "please " * (i % 4)},
                {"role": "assistant", "content": reply}]
    if i % 3 == 0:
        messages += [{"role": "user", "content": "thanks"}, {"role": "assistant", "content": "you are welcome"}]
    return {"messages": messages}


@pytest.fixture
def chat_file(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(conversation(rng, i)) + "\n" for i in range(40)), encoding="utf-8")
    return path


def test_the_loss_is_the_mean_over_assistant_tokens_only(chat_file):
    data = open_dataset(str(chat_file), "char", "chat", seed=1)
    block = data.block_size(None)
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=data.tokenizer.vocab_size, block_size=block, n_layer=1, n_head=2, n_embd=16))
    (_, x, y) = next(iter(data.batches("train", block, batch_size=3)))
    _, loss = model(x, y)
    logits, _ = model(x, y)
    log_probs = torch.log_softmax(logits, dim=-1)
    terms = []
    for row, unit in enumerate(data.units("train", block)[:3]):
        for t in range(len(unit.ids) - 1):
            if unit.mask[t + 1]:  # the next token is the assistant's: learned
                terms.append(-log_probs[row, t, unit.ids[t + 1]])
    assert len(terms) == int((y >= 0).sum())
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-6)


def test_changing_a_user_token_changes_no_target(chat_file):
    data = open_dataset(str(chat_file), "char", "chat", seed=1)
    tok = data.tokenizer
    messages = data.train_items[0][0]
    ids, mask = render(tok, messages)
    changed = [dict(m.to_json()) for m in messages]
    changed[0]["content"] = changed[0]["content"].replace("what", "whet")
    ids2, mask2 = render(tok, parse_messages(changed))
    assert ids != ids2 and mask == mask2
    targets = [t if m else -1 for t, m in zip(ids[1:], mask[1:])]
    targets2 = [t if m else -1 for t, m in zip(ids2[1:], mask2[1:])]
    assert targets == targets2


def test_packing_never_cuts_a_conversation_that_fits():
    rng = random.Random(3)
    lengths = [rng.randint(1, 50) for _ in range(500)]
    rows = pack(lengths, 50)
    assert sorted(i for row in rows for i in row) == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 50 for row in rows)
    assert len(rows) < 0.6 * len(lengths)  # packing, not one conversation per row


def test_packed_rows_hold_whole_conversations(chat_file):
    data = open_dataset(str(chat_file), "char", "chat", seed=1)
    block = 2 * data.longest  # room for two or more per row
    x, y = data.rows("train", block)
    units = data.units("train", block)
    assert all(u.piece == 0 for u in units)  # none had to be cut
    rows = [x[r].tolist() + [0] for r in range(len(x))]
    found = 0
    for unit in units:
        n = len(unit.ids)
        whole = [r for r in rows if any(r[k:k + n - 1] == unit.ids[:-1] for k in range(len(r) - n + 1))]
        found += bool(whole)
    assert found == len(units) and len(x) < len(units)


def test_a_conversation_longer_than_a_row_is_cut_with_every_token_a_target_once(chat_file):
    data = open_dataset(str(chat_file), "char", "chat", seed=1)
    block = 20
    notes = []
    data.block_size(block, log=notes.append)
    assert notes and "cut into pieces" in notes[0]
    units = data.units("train", block)
    whole = data.rendered("train")[0][0]
    pieces = [u for u in units if u.line == data.train_items[0][1]]
    assert len(pieces) > 1 and all(len(p.ids) <= block + 1 for p in pieces)
    rebuilt = pieces[0].ids + [t for p in pieces[1:] for t in p.ids[1:]]  # one token of overlap
    assert rebuilt == whole


def masked_at_first(n):
    """Conversations.batch with every target masked for its first n calls."""
    real, calls = Conversations.batch, [0]

    def batch(self, *args, **kwargs):
        x, y = real(self, *args, **kwargs)
        calls[0] += 1
        return (x, torch.full_like(y, -1)) if calls[0] <= n else (x, y)

    return batch


def test_an_all_masked_batch_gives_no_nan_and_moves_no_weight(chat_file, tmp_path, monkeypatch):
    settings = {**TINY, "max_iters": 2, "eval_interval": 2, "ckpt_interval": 1, "log_interval": 1,
                "weight_decay": 0.5, "learning_rate": 0.1}
    monkeypatch.setattr(Conversations, "batch", masked_at_first(2))  # both training steps have nothing to learn
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data", str(chat_file), "--examples", "chat", *flags(settings)]) == 0
    run = open_run(out)
    initial = build_model("torch", run.model_config(), seed=run.train_config().seed)  # its starting weights
    trained = load_file(str(out / "latest" / "model.safetensors"))
    for name, tensor in initial.state_dict().items():
        if name in trained:
            assert torch.equal(trained[name], tensor), name
    records = run.metrics()
    assert all(math.isfinite(v) for r in records for k, v in r.items() if isinstance(v, float))
    assert records and records[-1]["kind"] == "eval"


def test_init_extends_a_base_runs_tokenizer_and_embedding(corpus, tmp_path, chat_file):
    text = corpus.read_text() + chat_file.read_text() + "()"  # the base's characters cover the conversations
    base_data = tmp_path / "base.txt"
    base_data.write_text(text, encoding="utf-8")
    base = tmp_path / "base"
    assert main(["train", "--out", str(base), "--data", str(base_data), *flags({**TINY, "max_iters": 10})]) == 0
    tuned = tmp_path / "tuned"
    settings = {k: v for k, v in TINY.items() if k not in ("n_layer", "n_head", "n_embd", "block_size")}
    assert main(["train", "--out", str(tuned), "--init", str(base), "--data", str(chat_file), "--examples", "chat",
                 *flags({**settings, "max_iters": 1, "learning_rate": 0.0, "min_lr": 0.0, "weight_decay": 0.0})]) == 0
    base_run, tuned_run = open_run(base), open_run(tuned)
    old, new = base_run.tokenizer(), tuned_run.tokenizer()
    assert all(new.encode_ordinary(c) == old.encode_ordinary(c) for c in set(text))  # old ids keep their meaning
    assert set(CHAT_TOKENS) <= set(new.special_tokens) and new.vocab_size == old.vocab_size + len(CHAT_TOKENS)
    assert tuned_run.model_config().n_embd == base_run.model_config().n_embd
    before = base_run.load_model("best").transformer.wte.weight
    after = tuned_run.load_model("latest").transformer.wte.weight  # learning rate 0: the starting weights
    assert torch.equal(after[:old.vocab_size], before)
    assert torch.allclose(after[old.vocab_size:], before.mean(0).expand(len(CHAT_TOKENS), -1), atol=1e-6)


def test_init_with_weight_averaging_averages_from_the_base_weights(corpus, tmp_path):
    """--ema copies the weights it averages when it starts: with --init, they must be the base run's,
    not the random ones the model was built with."""
    base = tmp_path / "base"
    assert main(["train", "--out", str(base), "--data", str(corpus), *flags({**TINY, "max_iters": 10})]) == 0
    tuned = tmp_path / "tuned"
    settings = {k: v for k, v in TINY.items() if k not in ("n_layer", "n_head", "n_embd", "block_size")}
    assert main(["train", "--out", str(tuned), "--init", str(base), "--data", str(corpus), "--ema", "0.9",
                 *flags({**settings, "max_iters": 2, "eval_interval": 2, "learning_rate": 0.0, "min_lr": 0.0,
                         "weight_decay": 0.0})]) == 0
    start = load_file(str(base / "best" / "model.safetensors"))
    averaged = load_file(str(tuned / "best" / "model.safetensors"))  # best/ holds the average
    assert start.keys() == averaged.keys() and all(torch.equal(start[k], averaged[k]) for k in start)


def test_a_fine_tuned_run_resumes_with_its_base_given_as_a_relative_path(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "base", "--data", str(corpus), *flags({**TINY, "max_iters": 4})]) == 0
    settings = {k: v for k, v in TINY.items() if k not in ("n_layer", "n_head", "n_embd", "block_size")}
    assert main(["train", "--out", "tuned", "--init", "base", "--data", str(corpus),
                 *flags({**settings, "max_iters": 4})]) == 0
    assert main(["train", "--out", "tuned", "--resume", "--init", "./base", "--max-iters", "6"]) == 0  # same base


def test_a_resumed_chat_run_ends_with_the_same_weights(chat_file, tmp_path):
    settings = {**TINY, "block_size": 0, "max_iters": 6, "eval_interval": 3, "ckpt_interval": 3, "dropout": 0.1}
    straight, halted = tmp_path / "straight", tmp_path / "halted"
    assert main(["train", "--out", str(straight), "--data", str(chat_file), "--examples", "chat", *flags(settings)]) == 0
    assert main(["train", "--out", str(halted), "--data", str(chat_file), "--examples", "chat",
                 *flags({**settings, "max_iters": 3})]) == 0
    assert main(["train", "--out", str(halted), "--resume", "--max-iters", "6"]) == 0
    a = load_file(str(straight / "latest" / "model.safetensors"))
    b = load_file(str(halted / "latest" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
