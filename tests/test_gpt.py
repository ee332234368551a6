import math

import pytest
import torch

from nanostack.models import GPT, GPTConfig, sample_next_token


def tiny_gpt(vocab=50, block=16, seed=0, dtype=torch.float32, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=32, **kw)).to(dtype)


def test_loss_at_init_is_near_uniform():
    vocab = 65
    model = tiny_gpt(vocab)
    x = torch.randint(vocab, (8, 16))
    _, loss = model(x, torch.randint(vocab, (8, 16)))
    assert abs(loss.item() - math.log(vocab)) < 0.1


def test_overfits_one_batch():
    model = tiny_gpt()
    x, y = torch.randint(50, (4, 16)), torch.randint(50, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_weights_are_tied_and_residual_projections_scaled():
    model = tiny_gpt()
    assert model.lm_head.weight is model.transformer.wte.weight
    std = model.transformer.h[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(2 * 2)) < 0.004


def test_ignore_index_masks_targets():
    model = tiny_gpt()
    x, y = torch.randint(50, (2, 16)), torch.randint(50, (2, 16))
    logits, _ = model(x, y)
    masked = y.clone()
    masked[:, 8:] = -1
    _, loss = model(x, masked)
    expected = torch.nn.functional.cross_entropy(logits[:, :8].reshape(-1, 50), y[:, :8].reshape(-1))
    assert torch.allclose(loss, expected)


def test_kv_cache_gives_the_same_logits_as_a_full_forward():
    model = tiny_gpt(dtype=torch.float64).eval()
    x = torch.randint(50, (3, 12))
    full, _ = model(x, torch.zeros_like(x))
    cache = model.new_kv_cache(3)
    prefill, _ = model(x[:, :5], kv_cache=cache)
    assert torch.allclose(prefill[:, -1], full[:, 4])
    for t in range(5, 12):
        step, _ = model(x[:, t:t + 1], kv_cache=cache)
        assert torch.allclose(step[:, -1], full[:, t])


@pytest.mark.parametrize("prompt_len, new_tokens", [(5, 10), (3, 60), (40, 30)])
def test_greedy_generation_with_and_without_cache_is_identical(prompt_len, new_tokens):
    """Within the block size, past it (the window slides), and from a prompt longer than a block."""
    model = tiny_gpt(block=16, dtype=torch.float64)
    x = torch.randint(50, (2, prompt_len))
    cached = model.generate(x, new_tokens, temperature=0)
    uncached = model.generate(x, new_tokens, temperature=0, use_cache=False)
    assert cached.shape == (2, prompt_len + new_tokens)
    assert torch.equal(cached, uncached)


def test_generation_within_a_block_equals_plain_argmax_decoding():
    model = tiny_gpt(dtype=torch.float64).eval()
    seq = torch.randint(50, (1, 4))
    out = model.generate(seq, 10, temperature=0)
    for _ in range(10):
        logits, _ = model(seq)
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)


def test_sampling_is_seeded():
    model = tiny_gpt()
    x = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(x, 30, generator=torch.Generator().manual_seed(1))
    b = model.generate(x, 30, generator=torch.Generator().manual_seed(1))
    c = model.generate(x, 30, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sample_next_token_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    assert sample_next_token(logits, temperature=0).item() == 1
    assert all(sample_next_token(logits, top_k=1, generator=g).item() == 1 for _ in range(20))
    assert all(sample_next_token(logits, top_k=2, generator=g).item() in (1, 2) for _ in range(50))
    assert all(sample_next_token(logits, top_p=0.01, generator=g).item() == 1 for _ in range(20))
    probs = torch.softmax(logits, -1)[0]  # the top two hold 0.88 of the mass, so p=0.85 keeps exactly them
    assert probs[1] + probs[2] > 0.85 > probs[1]
    assert {sample_next_token(logits, top_p=0.85, generator=g).item() for _ in range(200)} == {1, 2}


def test_split_loss_predicts_every_token_once():
    from nanostack.data.shards import Shards
    from nanostack.loss import split_loss
    from nanostack.tokenizer import CharTokenizer

    model = tiny_gpt(dtype=torch.float64)
    tokens = torch.randint(50, (16 * 5 + 3,)).numpy()  # 82 targets: 5 whole windows and 2 more
    data = Shards(None, {"source": "random"}, CharTokenizer("".join(map(chr, range(65, 115)))), tokens, tokens)
    ids = torch.from_numpy(tokens).long()
    _, whole = model(ids[:80].view(5, 16), ids[1:81].view(5, 16))
    logits, _ = model(ids[80:82][None], ids[81:83][None])
    tail = torch.nn.functional.cross_entropy(logits[0], ids[81:83], reduction="sum")
    expected = (whole * 80 + tail) / 82
    assert split_loss(model, data, "val", 16, batch_size=2) == pytest.approx(expected.item(), rel=1e-12)
