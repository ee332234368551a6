"""Batches as tensors: random training windows of a token stream, and its exact pass in windows.

All randomness comes from the `generator` passed in, so saving its state saves the data order.
"""
import numpy as np
import torch


def get_batch(tokens: np.ndarray, batch_size: int, block_size: int, generator: torch.Generator, device="cpu"):
    """(x, y) int64 tensors of shape (batch_size, block_size); y is x shifted left by one token."""
    starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator).numpy()
    windows = tokens[starts[:, None] + np.arange(block_size + 1)]  # one fancy-index gather from the memmap
    windows = torch.from_numpy(windows.astype(np.int64))
    return to_device(windows, device)


def to_device(windows: torch.Tensor, device):
    """x and y as views of one copy of `windows` on device (one pinned, asynchronous copy on CUDA)."""
    if str(device).startswith("cuda"):
        windows = windows.pin_memory().to(device, non_blocking=True)
    elif str(device) != "cpu":
        windows = windows.to(device)
    return windows[:, :-1], windows[:, 1:]


def stream_windows(tokens: np.ndarray, block_size: int, batch_size: int = 64):
    """Yield (rows, x, y): consecutive windows covering every token of the stream once as a target.
    The last window may be shorter; its missing places are padding (x 0, y -1, which the loss ignores)."""
    n_targets = max(len(tokens) - 1, 0)
    n_windows = -(-n_targets // block_size)
    for first in range(0, n_windows, batch_size):
        last = min(first + batch_size, n_windows)
        start, stop = first * block_size, min(last * block_size, n_targets)
        ids = torch.from_numpy(np.asarray(tokens[start:stop + 1]).astype(np.int64))
        x = torch.zeros((last - first) * block_size, dtype=torch.long)
        y = torch.full_like(x, -1)
        x[:stop - start] = ids[:-1]
        y[:stop - start] = ids[1:]
        yield range(first, last), x.view(-1, block_size), y.view(-1, block_size)
