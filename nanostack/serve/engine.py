"""The engine: one thread that owns the model, the batch's rows (a preallocated KV cache) and every
torch call; the HTTP side only queues jobs and reads their events.

Continuous batching (iteration-level scheduling, as in Orca, OSDI'22): every step
  1. retires finished, cancelled and timed-out rows (the last row moves into the gap),
  2. admits queued jobs first come first served while rows are free and the prefill budget lasts
     (the first job always gets in, however long its prompt),
  3. decodes one token for every active row, each with its own sampling settings.
A job's tokens reach its asyncio.Queue through loop.call_soon_threadsafe. A job whose client went
away is marked cancelled by the HTTP side; its rows go at the next step, or it is skipped while queued.
Each choice samples from its own torch.Generator, so its tokens do not depend on the rest of the batch.
"""
import asyncio
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from nanostack.serve.rows import prompt_logprobs, rows_for
from nanostack.serve.sampling import RowSettings, sample_rows, top_logprobs
from nanostack.serve.text import TextStream

log = logging.getLogger("nanostack.serve")


class QueueFull(Exception):
    pass


@dataclass
class Sampling:
    max_tokens: int = 16
    settings: RowSettings = RowSettings()
    seed: int | None = None
    logprobs: int | None = None   # None: none; k: the chosen token's and k alternatives
    stop: tuple = ()
    n: int = 1


# ---- events, engine thread -> HTTP side -------------------------------------------------------------
@dataclass
class Admitted:
    first_index: int            # the job's first choice
    prompt_scores: list | None  # [(logprob, [(alt_id, alt_logprob)])] for every prompt token after the first


@dataclass
class Token:
    index: int            # the choice
    token: int
    text: str             # text that may go out now (may be "")
    offset: int           # characters of the choice's text before this token
    logprob: float | None
    top: list             # [(alt_id, alt_logprob)]


@dataclass
class Finished:
    index: int
    reason: str           # "stop" or "length"
    text: str             # the rest of the text


@dataclass
class Refused:
    status: int
    message: str
    code: str


class Job:
    """One prompt of a request with its n choices. Created on the event loop; `events` is read there."""

    def __init__(self, prompt: list, sampling: Sampling, loop, first_index: int = 0, score_top: int | None = None,
                 events: asyncio.Queue | None = None):
        self.prompt = prompt
        self.sampling = sampling
        self.loop = loop
        self.first_index = first_index  # index of its first choice in the response
        self.score_top = score_top      # score the prompt, with this many alternatives per token (None: don't)
        self.events = events if events is not None else asyncio.Queue()  # the jobs of a request may share one
        self.cancelled = False
        self.created = time.monotonic()
        self.admitted_at = None

    def emit(self, event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            pass

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Seq:
    """One choice of a job, alive in one row."""
    job: Job
    index: int
    generator: torch.Generator
    text: TextStream
    count: int = 0
    pending: int = 0          # the last sampled token, fed at the next step
    done: bool = False
    last_time: float = field(default_factory=time.monotonic)


class Observer:
    """What the engine reports as it works (metrics.py records it); these do nothing."""

    def prompt(self, count: int): pass
    def first_token(self, seconds: float): pass
    def token_gap(self, seconds: float): pass
    def tokens(self, count: int): pass
    def timed_out(self): pass


class Engine:
    def __init__(self, model, tokenizer, device, max_batch=32, max_queue=256, prefill_budget=512, queue_timeout=30.0,
                 request_timeout=300.0, observer=None):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.block = model.config.block_size
        self.rows = rows_for(model, max_batch, device)
        self.max_batch, self.max_queue, self.prefill_budget = max_batch, max_queue, prefill_budget
        self.queue_timeout, self.request_timeout = queue_timeout, request_timeout
        self.observer = observer or Observer()
        self.active: list = []
        self.queue = deque()
        self.cond = threading.Condition()
        self.admitting = True
        self.stopping = False
        self.step_delay = 0.0  # seconds to sleep after each step (tests slow the engine down with it)
        self.steps = 0
        self.generated = 0     # tokens sampled since start
        self.admitted = 0      # jobs admitted (prefilled) since start
        self.peak_rows = 0     # the most rows busy at once (reset it to watch a stretch)
        self.thread = threading.Thread(target=self._run, name="nanostack-engine", daemon=True)

    # ---- HTTP side --------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        return len(self.queue)

    @property
    def busy_rows(self) -> int:
        return len(self.active)

    def start(self) -> "Engine":
        self.thread.start()
        return self

    def submit(self, job: Job) -> None:
        with self.cond:
            if not self.admitting:
                raise QueueFull("the server is shutting down")
            if len(self.queue) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} requests waiting)")
            self.queue.append(job)
            self.cond.notify()

    def stop(self, grace: float = 10.0) -> None:
        """Stop admitting, let running rows finish for up to `grace` seconds, then end the thread."""
        with self.cond:
            self.admitting = False
            while self.queue:
                self.queue.popleft().emit(Refused(503, "the server is shutting down", "shutting_down"))
            self.cond.notify()
        deadline = time.monotonic() + grace
        while self.active and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.02)
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    # ---- engine thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self.cond:
                    while not (self.stopping or self.queue or self.active):
                        self.cond.wait(0.5)
                    if self.stopping:
                        break
                try:
                    self.step()
                except Exception as e:  # a bug: fail the jobs in hand loudly, keep serving the next ones
                    log.exception("engine step failed")
                    self._fail_all(f"internal error in the engine ({type(e).__name__})")
        for seq in self.active:
            seq.job.emit(Refused(503, "the server stopped", "shutting_down"))
        self.active.clear()

    def step(self) -> None:
        now = time.monotonic()
        self._retire(now)
        self._expire_queue(now)
        self._admit()
        self._retire(now)  # choices that finished with their first token
        if self.active:
            self.peak_rows = max(self.peak_rows, len(self.active))
            self._sample(self.active, self.rows.decode([seq.pending for seq in self.active]))
        self.steps += 1
        if self.step_delay:
            time.sleep(self.step_delay)

    def _retire(self, now: float) -> None:
        for i in range(len(self.active) - 1, -1, -1):  # from the end: rows after i are already kept
            seq = self.active[i]
            if not seq.done and not seq.job.cancelled:
                if now - seq.job.admitted_at <= self.request_timeout:
                    continue
                self.observer.timed_out()
                self._finish(seq, "length", seq.text.finish())
            last = len(self.active) - 1
            if i != last:
                self.rows.move(last, i)
                self.active[i] = self.active[last]
            self.active.pop()

    def _expire_queue(self, now: float) -> None:
        with self.cond:
            if not any(job.cancelled or now - job.created > self.queue_timeout for job in self.queue):
                return
            kept = deque()
            for job in self.queue:
                if job.cancelled:
                    continue
                if now - job.created > self.queue_timeout:
                    job.emit(Refused(503, f"waited more than {self.queue_timeout:g}s in the queue", "queue_timeout"))
                    continue
                kept.append(job)
            self.queue = kept

    def _admit(self) -> None:
        budget, admitted = self.prefill_budget, 0
        while True:
            with self.cond:
                if not self.queue:
                    return
                job = self.queue[0]
                if job.cancelled:  # its client left while it waited: never prefilled
                    self.queue.popleft()
                    continue
                rows = job.sampling.n if job.sampling.max_tokens > 0 else 0
                cost = min(len(job.prompt), self.block) + (len(job.prompt) if job.score_top is not None else 0)
                if len(self.active) + rows > self.max_batch or (admitted and cost > budget):
                    return
                self.queue.popleft()
            budget -= cost
            admitted += 1
            self._start(job)

    def _start(self, job: Job) -> None:
        job.admitted_at = time.monotonic()
        self.admitted += 1
        self.observer.prompt(len(job.prompt))
        scores = None
        if job.score_top is not None:
            scores = prompt_logprobs(self.model, job.prompt, job.score_top, self.device)
        job.emit(Admitted(job.first_index, scores))
        s = job.sampling
        if s.max_tokens == 0:
            for i in range(s.n):
                job.emit(Finished(job.first_index + i, "length", ""))
            return
        first_row = len(self.active)
        logits = self.rows.prefill(first_row, job.prompt[-self.block:])
        seqs = []
        for i in range(s.n):
            self.rows.move(first_row, first_row + i)  # the choices share the prompt's prefill
            seed = secrets.randbits(63) if s.seed is None else (s.seed + i) % 2 ** 64
            generator = torch.Generator(device=self.device).manual_seed(seed)
            seqs.append(Seq(job, job.first_index + i, generator, TextStream(self.tokenizer, s.stop),
                            last_time=job.created))
        self.active.extend(seqs)
        self._sample(seqs, logits.unsqueeze(0).expand(s.n, -1))

    def _sample(self, seqs: list, logits: torch.Tensor) -> None:
        tokens = sample_rows(logits, [seq.job.sampling.settings for seq in seqs], [seq.generator for seq in seqs])
        wanted = [seq.job.sampling.logprobs for seq in seqs]
        if any(k is not None for k in wanted):
            picked, tops = top_logprobs(logits, tokens, max(k or 0 for k in wanted))
        else:
            picked, tops = [None] * len(seqs), [([], [])] * len(seqs)
        now = time.monotonic()
        self.generated += len(tokens)
        self.observer.tokens(len(tokens))
        for seq, token, lp, (alt_ids, alt_lps) in zip(seqs, tokens, picked, tops):
            k = seq.job.sampling.logprobs
            if seq.count == 0:
                self.observer.first_token(now - seq.job.created)
            else:
                self.observer.token_gap(now - seq.last_time)
            seq.last_time = now
            seq.pending = token
            seq.count += 1
            offset = len(seq.text.text)
            delta, stopped = seq.text.push(token)
            top = list(zip(alt_ids[:k], alt_lps[:k])) if k else []
            seq.job.emit(Token(seq.index, token, delta, offset, lp if k is not None else None, top))
            if stopped:
                self._finish(seq, "stop", "")
            elif seq.count >= seq.job.sampling.max_tokens:
                self._finish(seq, "length", seq.text.finish())

    def _finish(self, seq: Seq, reason: str, text: str) -> None:
        seq.done = True
        seq.job.emit(Finished(seq.index, reason, text))

    def _fail_all(self, message: str) -> None:
        for seq in self.active:
            seq.job.emit(Refused(500, message, "internal_error"))
        self.active.clear()
