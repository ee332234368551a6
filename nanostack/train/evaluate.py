"""Exact loss over a whole split: every token predicted once, in non-overlapping windows.

estimate_loss samples eval_iters random batches (cheap, noisy: ±0.02 on tiny shakespeare with 20);
split_loss reads the whole split (deterministic: the figure to compare runs by).
"""
import numpy as np
import torch


@torch.no_grad()
def split_loss(model, tokens: np.ndarray, block_size: int, batch_size: int = 64, device="cpu") -> float:
    n_windows = (len(tokens) - 1) // block_size
    ids = torch.from_numpy(np.asarray(tokens[: n_windows * block_size + 1]).astype(np.int64))
    x = ids[:-1].view(n_windows, block_size)
    y = ids[1:].view(n_windows, block_size)
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, n_windows, batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        _, loss = model(xb, yb)
        total += loss.item() * len(xb)
    model.train(was_training)
    return total / n_windows


@torch.no_grad()
def example_nll(model, x, y, batch_size: int = 500):
    """(sum of NLL, number of predicted tokens) for every row of (x, y); targets of -1 count for nothing."""
    was_training = model.training
    model.eval()
    totals, counts = [], []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        logits, _ = model(xb, yb)
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), yb.reshape(-1),
                                                ignore_index=-1, reduction="none").view(yb.shape)
        totals.append(nll.sum(1))
        counts.append((yb != -1).sum(1))
    model.train(was_training)
    return torch.cat(totals), torch.cat(counts)
