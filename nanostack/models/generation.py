"""Autoregressive generation for any model with a context limit (`config.block_size`).

`sample_next_token` turns logits into a token (temperature, top-k, top-p); `generate_tokens` feeds
the model its own output one token at a time, through a KV cache when the model offers one, and
yields each new token as it comes; `generate` returns the whole extended sequence at once.
"""
import torch
from torch.nn import functional as F

from nanostack.models.config import SMALL_MODEL


def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token id per row of logits (B, vocab). temperature 0 means greedy (argmax)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        # nucleus: keep the most likely tokens whose mass reaches top_p (always at least one)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    # inverse CDF: token i owns [cdf[i-1], cdf[i]), so it is drawn with probability p_i (zero-probability
    # tokens own an empty interval). Cheaper than torch.multinomial per call on a CPU.
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.size(0), 1, generator=generator, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.size(-1) - 1)


def generate(model, idx, max_new_tokens: int, **sampling):
    """idx (B, T) extended by max_new_tokens tokens: (B, T + max_new_tokens); options as generate_tokens."""
    return torch.cat([idx, *generate_tokens(model, idx, max_new_tokens, **sampling)], dim=1)


@torch.inference_mode()
def generate_tokens(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None,
                    use_cache=True):
    """Yield max_new_tokens new tokens, each a (B, 1) tensor, continuing idx (B, T).

    The model sees at most block_size tokens. When the context window is full it slides, not by
    one token but back to its most recent `keep` tokens (3/4 of a block), after which it grows
    again. With a KV cache this means: clear the cache and prefill it with those `keep` tokens.
    A cache cannot slide by one token, because every cached key carries its absolute position;
    rebuilding it every block/4 tokens costs one batched prefill instead of a full forward pass
    per token. The samples stay right: every token is predicted from a contiguous window of the
    tokens just before it, at positions 0..n-1, which is exactly the kind of context the model
    was trained on. The path without cache crops the window the same way, so both produce the
    same tokens (tests/test_gpt.py checks this past the block size).
    """
    block = model.config.block_size
    keep = max(1, block - block // 4)
    was_training, threads = model.training, torch.get_num_threads()
    model.eval()
    if idx.device.type == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL:
        torch.set_num_threads(1)
    seq = idx
    start = max(0, seq.size(1) - block)
    cache = model.new_kv_cache(seq.size(0)) if use_cache and hasattr(model, "new_kv_cache") else None
    try:
        for _ in range(max_new_tokens):
            if seq.size(1) - start > block:  # window full: slide it back to the last `keep` tokens
                start = seq.size(1) - keep
                cache = model.new_kv_cache(seq.size(0)) if cache is not None else None
            if cache is None:
                logits, _ = model(seq[:, start:])
            elif cache.length == 0:
                logits, _ = model(seq[:, start:], kv_cache=cache)  # prefill
            else:
                logits, _ = model(seq[:, -1:], kv_cache=cache)
            token = sample_next_token(logits[:, -1, :], temperature, top_k, top_p, generator)
            seq = torch.cat([seq, token], dim=1)
            yield token
    finally:
        model.train(was_training)
        torch.set_num_threads(threads)
