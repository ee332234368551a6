"""Exact losses of a model on a dataset: every example (or stream window) of a split scored once.

The trainer's estimate_loss samples eval_iters random batches (cheap, noisy: ±0.02 on tiny
shakespeare with 20); these read the whole split, so they are the figures to compare runs by,
and their per-example sums line up with dataset.examples(split, block_size) for the data engine.
Knows datasets and models, nothing of run folders or training.
"""
import torch
from torch.nn import functional as F


@torch.no_grad()
def token_nll(model, x, y) -> torch.Tensor:
    """(B, T) float32: -log p(y | x) at every position, 0 where the target is padding (-1)."""
    logits, _ = model(x, y)  # with targets every position's logits are computed
    if logits.dtype != torch.float64:
        logits = logits.float()  # bf16 logits lose too much in a log-softmax
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-1, reduction="none")
    return nll.view(y.shape)


def example_losses(model, dataset, split: str, block_size: int, device="cpu", batch_size=None):
    """(nll_sum, tokens): two tensors with one entry per example of the split (float64 sums of the
    per-token NLL, and how many tokens were predicted), in the order of dataset.examples(split)."""
    was_training = model.training
    model.eval()
    sums, counts = [], []
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    try:
        for _, x, y in dataset.batches(split, block_size, **kwargs):
            nll = token_nll(model, x.to(device), y.to(device)).double().cpu()
            sums.append(nll.sum(1))
            counts.append((y != -1).sum(1))
    finally:
        model.train(was_training)
    return torch.cat(sums), torch.cat(counts)


def split_loss(model, dataset, split: str, block_size: int, device="cpu", batch_size=None) -> float:
    """Mean NLL per token over every token of the split."""
    sums, counts = example_losses(model, dataset, split, block_size, device, batch_size)
    return (sums.sum() / counts.sum()).item()
