"""Sampling for a batch of rows that each have their own settings, and the log-probabilities shown to clients.

`sample_rows` does per row exactly what models.generation.sample_next_token does for one sequence
(temperature, top-k, top-p, then an inverse-CDF draw), vectorised over the rows, with each row's
uniform draw taken from that row's own torch.Generator. So a seeded request gets the same tokens
alone or inside any batch, and the same tokens as `nanostack sample --seed` for one sample.

`top_logprobs` reports log-softmax of the model's raw logits (before temperature and filters): the
model's own belief, the number a direct forward pass gives.
"""
from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class RowSettings:
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None


def sample_rows(logits: torch.Tensor, settings: list, generators: list) -> list:
    """One token id per row of logits (n, vocab); settings and generators: one per row."""
    logits = logits.float()
    n, vocab = logits.shape
    greedy = [s.temperature == 0 for s in settings]
    tokens = logits.argmax(dim=-1)
    if all(greedy):
        return tokens.tolist()
    device = logits.device
    temperature = torch.tensor([s.temperature or 1.0 for s in settings], device=device)
    scaled = logits / temperature[:, None]
    k = torch.tensor([min(s.top_k or vocab, vocab) for s in settings], device=device)
    kth = scaled.sort(dim=-1, descending=True).values.gather(1, (k - 1)[:, None])
    scaled = scaled.masked_fill(scaled < kth, float("-inf"))  # top-k (as sample_next_token: ties stay)
    probs = F.softmax(scaled, dim=-1)
    # nucleus; rows without top_p (or top_p = 1) keep every token, as sample_next_token skips the step
    p = torch.tensor([s.top_p if s.top_p is not None and s.top_p < 1.0 else float("inf") for s in settings],
                     device=device)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= p[:, None], 0.0)
    probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    cdf = probs.cumsum(dim=-1)
    u = torch.cat([torch.rand(1, 1, generator=g, device=device) for g in generators]) * cdf[:, -1:]
    drawn = torch.searchsorted(cdf, u, right=True).clamp_(max=vocab - 1)[:, 0]
    return torch.where(torch.tensor(greedy, device=device), tokens, drawn).tolist()


def top_logprobs(logits: torch.Tensor, chosen: list, k: int):
    """(logprob of each row's chosen token, [(ids, logprobs) of each row's k most likely tokens])."""
    logp = F.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(1, torch.tensor(chosen, device=logp.device)[:, None])[:, 0].tolist()
    if k <= 0:
        return picked, [([], [])] * len(chosen)
    values, ids = logp.topk(min(k, logp.size(-1)), dim=-1)
    return picked, list(zip(ids.tolist(), values.tolist()))
