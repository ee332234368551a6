"""Random training batches: `batch_size` windows of `block_size + 1` tokens at random offsets.

All randomness comes from the `generator` passed in, so saving its state saves the data order.
"""
import numpy as np
import torch

from nanostack.errors import UserError


def check_split_size(tokens: np.ndarray, block_size: int, split: str, source: str) -> None:
    if len(tokens) < block_size + 1:
        raise UserError(
            f"the {split} split of {source} has {len(tokens)} tokens, fewer than one block of {block_size} + 1",
            "give more text, or lower --block-size",
        )


def get_batch(tokens: np.ndarray, batch_size: int, block_size: int, generator: torch.Generator, device="cpu"):
    """(x, y) int64 tensors of shape (batch_size, block_size); y is x shifted left by one token."""
    starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator).numpy()
    windows = tokens[starts[:, None] + np.arange(block_size + 1)]  # one fancy-index gather from the memmap
    windows = torch.from_numpy(windows.astype(np.int64))
    if str(device).startswith("cuda"):  # one pinned, asynchronous copy; x and y are views of it
        windows = windows.pin_memory().to(device, non_blocking=True)
    elif device != "cpu":
        windows = windows.to(device)
    return windows[:, :-1], windows[:, 1:]
