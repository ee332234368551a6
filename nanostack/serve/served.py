"""ServedModel: the one run a server serves, loaded once: its model on the device, its tokenizer,
the engine thread, the request schemas with the server's limits, and how text becomes token ids."""
import os
import time

import torch

from nanostack.errors import UserError
from nanostack.models.engines import resolve_device
from nanostack.models.generation import SMALL_MODEL
from nanostack.run import RunFolder
from nanostack.serve.api_errors import APIError
from nanostack.serve.chat_template import chat_prompt, chat_template_name
from nanostack.serve.engine import Engine
from nanostack.serve.schemas import Limits, make_schemas, vocabulary_pattern
from nanostack.serve.settings import ServeSettings


def cpu_threads(model) -> int:
    """Threads for the engine's torch calls on a CPU: one for a small model (its steps are many tiny ops,
    as generation.SMALL_MODEL says), else all cores but one, which the HTTP thread needs. Measured on
    2 busy cores: a 2-thread pool made a tiny model's decode step 25x slower (90 ms against 3.7 ms)."""
    if sum(p.numel() for p in model.parameters()) < SMALL_MODEL:
        return 1
    return max(1, (os.cpu_count() or 2) - 1)


class ServedModel:
    def __init__(self, run: RunFolder, settings: ServeSettings, observer=None):
        device = resolve_device(settings.device)
        self.run = run
        self.model = run.load_model(settings.checkpoint, device)
        if device.startswith("cuda"):
            self.model = self.model.to(torch.bfloat16)  # half the memory and bandwidth; logits go back to fp32
        elif device == "cpu":
            torch.set_num_threads(cpu_threads(self.model))
        self.tokenizer = run.tokenizer()
        self.settings = s = settings.for_device(device)
        self.id = run.path.name
        self.created = int(time.time())
        self.device = device
        self.config = self.model.config
        lim = s.limits
        self.limits = Limits(lim.max_tokens, lim.max_prompt_tokens, min(lim.max_n, s.max_batch), lim.max_messages,
                             lim.max_body)
        self.schemas = make_schemas(self.limits, self.config.vocab_size, vocabulary_pattern(self.tokenizer))
        self.chat_template = chat_template_name(self.tokenizer)
        self.engine = Engine(self.model, self.tokenizer, device, s.max_batch, s.max_queue, s.prefill_budget,
                             s.queue_timeout, s.request_timeout, observer)
        self.start_ids = self._start_ids()

    @property
    def kv_bytes(self) -> int:
        return self.engine.rows.nbytes

    def _start_ids(self) -> list:
        """An empty prompt starts from a newline, or from token 0 without one (as `nanostack sample`)."""
        try:
            return self.tokenizer.encode("\n")[:1] or [0]
        except UserError:
            return [0]

    def encode(self, text: str, param: str = "prompt") -> list:
        if text == "":
            return list(self.start_ids)
        try:
            ids = self.tokenizer.encode(text, allowed_special="none")  # special-token text stays text
        except UserError as e:
            raise APIError(400, f"{param}: {e.message}", param, "invalid_value") from None
        except UnicodeError:
            raise APIError(400, f"{param}: text is not valid Unicode", param, "invalid_value") from None
        return self.check_length(ids, param)

    def check_length(self, ids: list, param: str = "prompt") -> list:
        if len(ids) > self.limits.max_prompt_tokens:
            raise APIError(400, f"{param} has {len(ids)} tokens; the limit is {self.limits.max_prompt_tokens}",
                           param, "prompt_too_long")
        return ids

    def chat_ids(self, messages: list):
        """(token ids, stop strings) of a conversation; a long one keeps its last max_prompt_tokens tokens."""
        try:
            ids, stops = chat_prompt(self.tokenizer, messages)
        except UserError as e:
            raise APIError(400, f"messages: {e.message}", "messages", "invalid_value") from None
        return ids[-self.limits.max_prompt_tokens:], stops

    def decode_text(self, ids) -> str:
        return self.tokenizer.decode(ids)
