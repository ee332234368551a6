"""RowKVCache: many sequences at different lengths decoded in one batch give each sequence the
logits of its own full forward pass (the server's continuous batching rests on this)."""
import pytest
import torch

from nanostack.models import GPT, GPTConfig

MODERN = {"rotary": True, "rmsnorm": True, "qk_norm": True, "activation": "relu2", "untied_head": True}


def tiny_gpt(block=16, **options):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=block, n_layer=2, n_head=2, n_embd=32, **options)).double().eval()


def full_logits(model, seq):
    x = torch.tensor([seq])
    logits, _ = model(x, torch.zeros_like(x))
    return logits[0]


@pytest.mark.parametrize("options", [{}, MODERN], ids=["gpt2", "modern"])
@torch.no_grad()
def test_rows_at_different_lengths_decode_as_if_alone(options):
    model = tiny_gpt(**options)  # rotary: each row's keys turn by its own positions
    gen = torch.Generator().manual_seed(1)
    seqs = [torch.randint(50, (n,), generator=gen).tolist() for n in (3, 9, 1, 6)]
    cache = model.new_row_cache(6)
    for row, seq in enumerate(seqs):  # prefill every row but the last token of its sequence
        prompt = seq[:-1] or None
        if prompt:
            last, _ = model(torch.tensor([prompt]), kv_cache=cache.prefill(row))
            assert torch.allclose(last[0, -1], full_logits(model, seq)[len(prompt) - 1])
        else:
            cache.prefill(row)
    assert cache.lengths[:4] == [2, 8, 0, 5]
    for step in range(4):  # then decode all four together, each at its own position
        pending = [s[-1] for s in seqs]
        logits, _ = model(torch.tensor(pending).view(4, 1), kv_cache=cache.decode(4))
        for row, seq in enumerate(seqs):
            assert torch.allclose(logits[row, -1], full_logits(model, seq)[-1], atol=1e-10), (step, row)
            seq.append(int(logits[row, -1].argmax()))
    assert cache.lengths[:4] == [6, 12, 4, 9]


@torch.no_grad()
def test_a_moved_row_carries_on_and_a_refilled_row_forgets():
    model = tiny_gpt()
    a, b = [5, 7, 9, 11], [1, 2, 3, 4, 5, 6]
    cache = model.new_row_cache(3)
    model(torch.tensor([a[:-1]]), kv_cache=cache.prefill(0))
    model(torch.tensor([b[:-1]]), kv_cache=cache.prefill(1))
    cache.move(1, 0)  # row 0 finished: the last row takes its place
    logits, _ = model(torch.tensor([[b[-1]]]), kv_cache=cache.decode(1))
    assert torch.allclose(logits[0, -1], full_logits(model, b)[-1], atol=1e-10)
    model(torch.tensor([a[:2]]), kv_cache=cache.prefill(0))  # a new request reuses the row
    logits, _ = model(torch.tensor([[a[2]]]), kv_cache=cache.decode(1))
    assert torch.allclose(logits[0, -1], full_logits(model, a[:3])[-1], atol=1e-10)


def test_a_row_cannot_grow_past_the_block():
    model = tiny_gpt(block=4)
    cache = model.new_row_cache(1)
    model(torch.tensor([[1, 2, 3, 4]]), kv_cache=cache.prefill(0))
    try:
        model(torch.tensor([[5]]), kv_cache=cache.decode(1))
    except ValueError as e:
        assert "block_size 4" in str(e)
    else:
        raise AssertionError("a full row took another token")
