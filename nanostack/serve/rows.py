"""The rows of the batch: where each active sequence's context lives between decoding steps.

`CachedRows` (a GPT): one preallocated RowKVCache of max_rows rows; a new request is prefilled into
a free row, then every step decodes one token for all rows at once. `WindowRows` (any other model,
which has no KV cache): each row keeps its token window and is run on its own every step.

Both slide a row's window as `nanostack sample` does (models/generation.py): when a row's context
reaches block_size it restarts from its most recent `keep` tokens, so a long generation sees the
same contexts whether it is served or sampled. Rows are dense: `move(src, dst)` fills a gap.
"""
import torch


def keep_after_slide(block_size: int) -> int:
    return max(1, block_size - block_size // 4)  # as generation.generate_tokens


class CachedRows:
    def __init__(self, model, max_rows: int):
        self.model = model
        self.cache = model.new_row_cache(max_rows)
        self.block = model.config.block_size
        self.keep = keep_after_slide(self.block)
        self.device = model.lm_head.weight.device
        self.context = [[] for _ in range(max_rows)]  # the tokens cached in each row

    @property
    def nbytes(self) -> int:
        return self.cache.nbytes

    def prefill(self, row: int, window: list) -> torch.Tensor:
        """Fill row with window (at most block_size tokens); the logits (vocab,) after its last token."""
        logits, _ = self.model(torch.tensor([window], device=self.device), kv_cache=self.cache.prefill(row))
        self.context[row] = list(window)
        return logits[0, -1]

    def decode(self, tokens: list) -> torch.Tensor:
        """Feed tokens[r] to row r (rows 0..n-1): logits (n, vocab)."""
        for row in range(len(tokens)):
            if self.cache.lengths[row] >= self.block:  # full: keep the last keep-1 tokens, the new one makes keep
                kept = self.context[row][len(self.context[row]) - (self.keep - 1):] if self.keep > 1 else []
                if kept:
                    self.prefill(row, kept)
                else:
                    self.cache.prefill(row)
                    self.context[row] = []
        x = torch.tensor(tokens, device=self.device).view(-1, 1)
        logits, _ = self.model(x, kv_cache=self.cache.decode(len(tokens)))
        for row, token in enumerate(tokens):
            self.context[row].append(token)
        return logits[:, -1]

    def move(self, src: int, dst: int) -> None:
        if src != dst:
            self.cache.move(src, dst)
            self.context[dst] = list(self.context[src])


class WindowRows:
    def __init__(self, model, max_rows: int, device):
        self.model = model
        self.block = model.config.block_size
        self.keep = keep_after_slide(self.block)
        self.device = device
        self.context = [[] for _ in range(max_rows)]

    nbytes = 0

    def _last_logits(self, window: list) -> torch.Tensor:
        logits, _ = self.model(torch.tensor([window], device=self.device))
        return logits[0, -1]

    def prefill(self, row: int, window: list) -> torch.Tensor:
        self.context[row] = list(window)
        return self._last_logits(window)

    def decode(self, tokens: list) -> torch.Tensor:
        out = []
        for row, token in enumerate(tokens):
            window = self.context[row] + [token]
            if len(window) > self.block:
                window = window[-self.keep:]
            self.context[row] = window
            out.append(self._last_logits(window))
        return torch.stack(out)

    def move(self, src: int, dst: int) -> None:
        if src != dst:
            self.context[dst] = list(self.context[src])


def rows_for(model, max_rows: int, device):
    return CachedRows(model, max_rows) if hasattr(model, "new_row_cache") else WindowRows(model, max_rows, device)


@torch.no_grad()
def prompt_logprobs(model, ids: list, top: int, device) -> list:
    """For every token of ids after the first: (logprob, [(alt_id, alt_logprob)] * top), in order.

    Scored as `nanostack eval` scores a stream: consecutive windows of block_size targets, each
    predicted from the tokens before it in its window (loss.token_nll, data.loader.stream_windows)."""
    block = model.config.block_size
    out = []
    for start in range(0, max(len(ids) - 1, 0), block):
        chunk = ids[start:start + block + 1]
        x = torch.tensor([chunk[:-1]], device=device)
        y = torch.tensor([chunk[1:]], device=device)
        logits, _ = model(x, y)  # with targets every position's logits come back
        logp = torch.log_softmax(logits[0].float(), dim=-1)
        picked = logp.gather(1, y[0][:, None])[:, 0].tolist()
        if top > 0:
            values, alt = logp.topk(min(top, logp.size(-1)), dim=-1)
            alts = [list(zip(a, v)) for a, v in zip(alt.tolist(), values.tolist())]
        else:
            alts = [[] for _ in picked]
        out.extend(zip(picked, alts))
    return out
