"""What a call's engine events become: OpenAI `text_completion` / `chat.completion` bodies, or the
chunks of their streams. `CallState` gathers the events of one call (its prompts and choices);
`CompletionFormat` and `ChatFormat` turn it into the two APIs' shapes, streamed or whole."""
import json
import time
from dataclasses import dataclass, field

from nanostack.serve.engine import Admitted, Finished, Token
from nanostack.serve.text import token_bytes, token_text


@dataclass
class Prompt:
    ids: list
    text: str                      # as the client gave it (echo returns it)
    scores: list | None = None     # [(logprob, alternatives)] for ids[1:]


@dataclass
class Choice:
    index: int
    prompt: int
    parts: list = field(default_factory=list)   # text pieces as they went out
    tokens: list = field(default_factory=list)  # Token events (for logprobs)
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


class CallState:
    def __init__(self, prompts: list, n: int):
        self.prompts = prompts
        self.n = n
        self.choices = [Choice(p * n + i, p) for p in range(len(prompts)) for i in range(n)]
        self.admitted = 0

    @property
    def complete(self) -> bool:
        return all(c.finish_reason is not None for c in self.choices)

    def add(self, event) -> None:
        if isinstance(event, Admitted):
            self.prompts[event.first_index // self.n].scores = event.prompt_scores
            self.admitted += 1
        elif isinstance(event, Token):
            choice = self.choices[event.index]
            choice.tokens.append(event)
            choice.parts.append(event.text)
        elif isinstance(event, Finished):
            choice = self.choices[event.index]
            choice.parts.append(event.text)
            choice.finish_reason = event.reason

    def usage(self) -> dict:
        prompt = sum(len(p.ids) for p in self.prompts)
        completion = sum(len(c.tokens) for c in self.choices)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sse(obj) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


DONE = b"data: [DONE]\n\n"


class CompletionFormat:
    object = "text_completion"

    def __init__(self, call_id: str, model: str, tokenizer, logprobs: int | None, echo: bool):
        self.id, self.model, self.tokenizer = call_id, model, tokenizer
        self.logprobs, self.echo = logprobs, echo
        self.created = int(time.time())

    def _wrap(self, choices: list, usage=None) -> dict:
        body = {"id": self.id, "object": self.object, "created": self.created, "model": self.model,
                "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return body

    # ---- logprobs ----------------------------------------------------------------------------------------
    def _alternatives(self, top) -> dict:
        return {token_text(self.tokenizer, i): lp for i, lp in top}

    def _prompt_logprobs(self, prompt: Prompt) -> dict:
        if not prompt.text:  # an empty prompt was only a start token: nothing to echo
            return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        tokens = [token_text(self.tokenizer, i) for i in prompt.ids]
        scores = prompt.scores or []
        offsets, at = [], 0
        for t in tokens:
            offsets.append(at)
            at += 0 if t.startswith("bytes:") else len(t)
        return {"tokens": tokens, "token_logprobs": [None] + [lp for lp, _ in scores],
                "top_logprobs": [None] + [self._alternatives(top) for _, top in scores], "text_offset": offsets}

    def _token_logprobs(self, events, base: int) -> dict:
        return {"tokens": [token_text(self.tokenizer, e.token) for e in events],
                "token_logprobs": [e.logprob for e in events],
                "top_logprobs": [self._alternatives(e.top) for e in events],
                "text_offset": [base + e.offset for e in events]}

    # ---- whole -------------------------------------------------------------------------------------------
    def body(self, state: CallState) -> dict:
        choices = []
        for c in state.choices:
            prompt = state.prompts[c.prompt]
            head = prompt.text if self.echo else ""
            item = {"text": head + c.text, "index": c.index, "finish_reason": c.finish_reason, "logprobs": None}
            if self.logprobs is not None:
                lp = self._prompt_logprobs(prompt) if self.echo else \
                    {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
                gen = self._token_logprobs(c.tokens, len(head))
                item["logprobs"] = {k: lp[k] + gen[k] for k in lp}
            choices.append(item)
        return self._wrap(choices, state.usage())

    # ---- streamed ----------------------------------------------------------------------------------------
    def _chunk(self, index: int, text: str, finish=None, logprobs=None) -> bytes:
        return sse(self._wrap([{"text": text, "index": index, "finish_reason": finish, "logprobs": logprobs}]))

    def opening(self, state: CallState, prompt_index: int):
        """Chunks sent when a prompt's job is admitted: its echo, if asked for."""
        if not self.echo:
            return
        prompt = state.prompts[prompt_index]
        for c in state.choices:
            if c.prompt == prompt_index:
                lp = self._prompt_logprobs(prompt) if self.logprobs is not None else None
                yield self._chunk(c.index, prompt.text, logprobs=lp)

    def token(self, state: CallState, event: Token):
        if event.text == "" and self.logprobs is None:
            return
        base = len(state.prompts[state.choices[event.index].prompt].text) if self.echo else 0
        lp = self._token_logprobs([event], base) if self.logprobs is not None else None
        yield self._chunk(event.index, event.text, logprobs=lp)

    def finished(self, state: CallState, event: Finished):
        yield self._chunk(event.index, event.text, finish=event.reason)

    def usage_chunk(self, state: CallState) -> bytes:
        return sse(self._wrap([], state.usage()))


class ChatFormat(CompletionFormat):
    object = "chat.completion"

    def _content_logprobs(self, events) -> list:
        def entry(i, lp):
            return {"token": token_text(self.tokenizer, i), "logprob": lp, "bytes": token_bytes(self.tokenizer, i)}
        return [{**entry(e.token, e.logprob), "top_logprobs": [entry(i, lp) for i, lp in e.top]} for e in events]

    def body(self, state: CallState) -> dict:
        choices = []
        for c in state.choices:
            item = {"index": c.index, "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason, "logprobs": None}
            if self.logprobs is not None:
                item["logprobs"] = {"content": self._content_logprobs(c.tokens)}
            choices.append(item)
        return self._wrap(choices, state.usage())

    def _delta(self, index: int, delta: dict, finish=None, logprobs=None) -> bytes:
        body = self._wrap([{"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}])
        body["object"] = "chat.completion.chunk"
        return sse(body)

    def opening(self, state: CallState, prompt_index: int):
        for c in state.choices:
            if c.prompt == prompt_index:
                yield self._delta(c.index, {"role": "assistant", "content": ""})

    def token(self, state: CallState, event: Token):
        if event.text == "" and self.logprobs is None:
            return
        lp = {"content": self._content_logprobs([event])} if self.logprobs is not None else None
        yield self._delta(event.index, {"content": event.text}, logprobs=lp)

    def finished(self, state: CallState, event: Finished):
        if event.text:
            yield self._delta(event.index, {"content": event.text})
        yield self._delta(event.index, {}, finish=event.reason)

    def usage_chunk(self, state: CallState) -> bytes:
        body = self._wrap([], state.usage())
        body["object"] = "chat.completion.chunk"
        return sse(body)
