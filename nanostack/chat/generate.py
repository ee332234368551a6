"""Generation with tools: the model writes, and when it calls a tool, the tool's output is forced in.

Each row of a batch runs the same small state machine over the tokens it emits:

    writing --<|tool_start|>--> in a call (its tokens are collected)
    in a call --<|tool_end|>--> the tool runs; <|output_start|>, the output's tokens and <|output_end|>
                                are queued, and the next steps take them from the queue instead of
                                sampling (each is fed to the model like any other token)
    --<|assistant_end|>-- (or a stop token) ends the row

Every token comes out as a Token(id, forced): forced is True for tokens the tool supplied. Rows of a
batch advance in lockstep (one token each per step, forced or sampled), so they share one KV cache;
a finished row keeps being fed padding that nobody reads. With tools disabled a call is not run and
the model continues on its own, as it would at any other token.

Knows models (through their one interface) and tokenizers; nothing of run folders.
"""
from collections import deque
from dataclasses import dataclass

import torch

from nanostack.chat.tools import run_tool_call
from nanostack.data.chat_format import ASSISTANT_END, BOS, OUTPUT_END, OUTPUT_START, TOOL_END, TOOL_START
from nanostack.models.generation import SMALL_MODEL, sample_next_token


@dataclass(frozen=True)
class Token:
    id: int
    forced: bool  # True when the tool supplied it; False when the model sampled it


class RowState:
    """One row's place in the state machine."""

    def __init__(self):
        self.queue = deque()   # forced tokens waiting to be emitted
        self.call = None       # token ids of the call being written, or None outside a call
        self.done = False


class ToolRunner:
    """What the state machine needs of the tokenizer and the tools."""

    def __init__(self, tokenizer, tools: dict, stop_ids=()):
        specials = tokenizer.special_tokens
        self.tokenizer, self.tools = tokenizer, tools
        self.tool_start, self.tool_end = specials.get(TOOL_START), specials.get(TOOL_END)
        self.output_start, self.output_end = specials.get(OUTPUT_START), specials.get(OUTPUT_END)
        self.stop = {specials[n] for n in (ASSISTANT_END, BOS) if n in specials} | set(stop_ids)

    def advance(self, state: RowState, token: int) -> None:
        """Update a row after it emitted `token`: collect a call, run it at its end, queue its output."""
        if token in self.stop:
            state.done = True
        elif token == self.tool_start and self.tools:
            state.call = []
        elif token == self.tool_end and state.call is not None:
            output = run_tool_call(self.tokenizer.decode(state.call), self.tools)
            state.call = None
            state.queue.extend([self.output_start, *self.encode(output), self.output_end])
        elif state.call is not None:
            state.call.append(token)

    def encode(self, text: str) -> list:
        """Output text as tokens; characters a char tokenizer lacks are left out (the model could not
        read them anyway)."""
        try:
            return self.tokenizer.encode_ordinary(text)
        except Exception:  # noqa: BLE001  (a char tokenizer refuses unseen characters)
            kept = "".join(c for c in text if _encodable(self.tokenizer, c))
            return self.tokenizer.encode_ordinary(kept)


def _encodable(tokenizer, char: str) -> bool:
    try:
        tokenizer.encode_ordinary(char)
        return True
    except Exception:  # noqa: BLE001
        return False


@torch.inference_mode()
def generate_with_tools(model, prompt_ids, tokenizer, tools: dict, max_new_tokens: int, num_samples: int = 1,
                        temperature=1.0, top_k=None, top_p=None, generator=None, stop_ids=()):
    """Yield, step by step, one Token per row (a list of num_samples Tokens) continuing prompt_ids,
    until every row has stopped or max_new_tokens steps are done. A stopped row yields None."""
    runner = ToolRunner(tokenizer, tools, stop_ids)
    device = _device(model)
    states = [RowState() for _ in range(num_samples)]
    seq = torch.tensor([list(prompt_ids)] * num_samples, dtype=torch.long, device=device)
    block = model.config.block_size
    keep = max(1, block - block // 4)
    use_cache = hasattr(model, "new_kv_cache")
    cache, start = None, max(0, seq.size(1) - block)
    was_training, threads = model.training, torch.get_num_threads()
    model.eval()
    if device.type == "cpu" and model.num_params() < SMALL_MODEL:
        torch.set_num_threads(1)
    try:
        for _ in range(max_new_tokens):
            if seq.size(1) - start > block:  # the window is full: slide it back to the last `keep` tokens
                start, cache = seq.size(1) - keep, None
            if not use_cache:
                logits, _ = model(seq[:, start:])
            elif cache is None:
                cache = model.new_kv_cache(num_samples)
                logits, _ = model(seq[:, start:], kv_cache=cache)  # prefill
            else:
                logits, _ = model(seq[:, -1:], kv_cache=cache)
            sampled = sample_next_token(logits[:, -1, :], temperature, top_k, top_p, generator)[:, 0].tolist()
            column, step = [], []
            for state, token in zip(states, sampled):
                if state.done:
                    column.append(token)
                    step.append(None)
                    continue
                forced = bool(state.queue)
                token = state.queue.popleft() if forced else token
                column.append(token)
                step.append(Token(token, forced))
                runner.advance(state, token)
            seq = torch.cat([seq, torch.tensor(column, device=device).view(-1, 1)], dim=1)
            yield step
            if all(s.done for s in states):
                return
    finally:
        model.train(was_training)
        torch.set_num_threads(threads)


def reply_tokens(model, prompt_ids, tokenizer, tools: dict, max_new_tokens: int, **sampling) -> list:
    """[[Token]] per row: each row's reply, without the token that ended it."""
    rows = [[] for _ in range(sampling.get("num_samples", 1))]
    ended = [False] * len(rows)
    stop = ToolRunner(tokenizer, tools, sampling.get("stop_ids", ())).stop
    for step in generate_with_tools(model, prompt_ids, tokenizer, tools, max_new_tokens, **sampling):
        for row, token in enumerate(step):
            if token is None or ended[row]:
                continue
            if token.id in stop:
                ended[row] = True
            else:
                rows[row].append(token)
    return rows


def _device(model):
    for p in model.parameters():
        return p.device if isinstance(p, torch.Tensor) else torch.device("cpu")
    return torch.device("cpu")
