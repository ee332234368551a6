"""RowKVCache: one preallocated key/value cache holding many independent sequences, one per row.

A server decodes many requests in one batch, each at its own length: row r holds the keys and
values of its own tokens at positions 0..lengths[r]-1. Two views drive the GPT's forward:

- `prefill(row)`: one sequence fed whole into an empty row (a new request), causal as usual;
- `decode(n)`: rows 0..n-1 each feed one token at their own position; the attention mask lets each
  row see only its own keys, so a row's logits do not depend on the other rows.

Rows are kept dense (a finished row is replaced by the last one: `move`), so decoding works on
views of the first n rows. The views follow the protocol the GPT's forward expects of a cache
(positions, append, attn_mask, advance), like gpt.KVCache. The cache knows nothing of sampling.
"""
import torch


class RowKVCache:
    def __init__(self, config, max_rows: int, device, dtype):
        head_dim = config.n_embd // config.n_head
        shape = (config.n_layer, 2, max_rows, config.n_head, config.block_size, head_dim)
        # zeros, not empty: masked-out keys still meet a 0 weight, and 0 * NaN garbage would be NaN
        self.buffers = torch.zeros(shape, device=device, dtype=dtype)
        self.block_size = config.block_size
        self.max_rows = max_rows
        self.lengths = [0] * max_rows  # tokens cached in each row

    @property
    def nbytes(self) -> int:
        return self.buffers.numel() * self.buffers.element_size()

    def prefill(self, row: int) -> "RowPrefill":
        """A cache view that fills `row` from position 0 (its old content is forgotten)."""
        self.lengths[row] = 0
        return RowPrefill(self, row)

    def decode(self, n: int) -> "RowDecode":
        """A cache view over rows 0..n-1, each taking one more token at its own position."""
        return RowDecode(self, n)

    def move(self, src: int, dst: int) -> None:
        """Copy row src into row dst (compaction, or a second choice sharing a prompt's prefill)."""
        if src != dst:
            self.buffers[:, :, dst] = self.buffers[:, :, src]
            self.lengths[dst] = self.lengths[src]


class RowPrefill:
    attn_mask = None  # causal within the prompt: nothing else is in the row

    def __init__(self, cache: RowKVCache, row: int):
        self.cache, self.row = cache, row
        self.length = 0

    def positions(self, T: int, device) -> torch.Tensor:
        if T > self.cache.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.cache.block_size}")
        return torch.arange(T, dtype=torch.long, device=device)

    def append(self, layer: int, k, v):
        T = k.size(2)
        buf = self.cache.buffers[layer, :, self.row:self.row + 1]
        buf[0, :, :, :T] = k
        buf[1, :, :, :T] = v
        return k, v  # a prefill attends to its own keys only

    def advance(self, T: int) -> None:
        self.length = T
        self.cache.lengths[self.row] = T


class RowDecode:
    length = 0  # each row has its own; the GPT's one-token check needs only T == 1

    def __init__(self, cache: RowKVCache, n: int):
        self.cache, self.n = cache, n
        self.attn_mask = None
        self._pos = None

    def positions(self, T: int, device) -> torch.Tensor:
        if T != 1:
            raise ValueError("a batched decode feeds one token per row")
        lengths = self.cache.lengths[:self.n]
        span = max(lengths) + 1  # keys to attend over: the longest row's, plus the new token
        if span > self.cache.block_size:
            raise ValueError(f"sequence of {span} tokens is longer than block_size {self.cache.block_size}")
        self._pos = torch.tensor(lengths, dtype=torch.long, device=device)
        self._rows = torch.arange(self.n, device=device)
        keys = torch.arange(span, device=device)
        self.attn_mask = (keys[None, :] <= self._pos[:, None]).view(self.n, 1, 1, span)  # own keys only
        return self._pos.view(self.n, 1)

    def append(self, layer: int, k, v):
        buf = self.cache.buffers[layer]
        buf[0][self._rows, :, self._pos] = k[:, :, 0]  # row r writes at its own position lengths[r]
        buf[1][self._rows, :, self._pos] = v[:, :, 0]
        span = self.attn_mask.size(-1)
        return buf[0, :self.n, :, :span], buf[1, :self.n, :, :span]

    def advance(self, T: int) -> None:
        for r in range(self.n):
            self.cache.lengths[r] += T
