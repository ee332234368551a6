"""The OpenAI-compatible endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions.

A call becomes one engine job per prompt (its n choices share the prompt's prefill), all sending
their events to one asyncio.Queue. Streamed calls wait until every job is admitted before the
response starts, so a full or timed-out queue is still a real 503 with Retry-After; then each event
goes out as it comes. A client that leaves (while queued, waiting, or streaming) cancels its jobs:
the engine frees their rows at its next step.
"""
import asyncio
import logging
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nanostack.serve.api_errors import APIError
from nanostack.serve.engine import Admitted, Finished, Job, QueueFull, Refused, Sampling, Token
from nanostack.serve.responses import DONE, CallState, ChatFormat, CompletionFormat, Prompt, sse
from nanostack.serve.sampling import RowSettings
from nanostack.serve.schemas import Completion, ChatCompletion, Error, ModelCard, ModelList

log = logging.getLogger("nanostack.serve")
GONE = object()  # put on a call's queue when its client disconnects

ERRORS = {status: {"model": Error, "description": what} for status, what in (
    (400, "invalid request: the message names the parameter"), (401, "missing or wrong bearer token"),
    (404, "unknown model"), (413, "request body too large"),
    (503, "queue full or queue wait too long; retry after Retry-After seconds"))}
# OpenAPI 3.1: the schema of an event stream describes each event (its data: a JSON chunk, or [DONE])
SSE_DOC = {"text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {
    "data": {"type": "string", "description": "a chunk as JSON; the last event is [DONE]"}}}}}


def make_router(served, telemetry=None) -> APIRouter:
    CompletionRequest, ChatRequest = served.schemas
    router = APIRouter()

    def model_card() -> dict:
        return {"id": served.id, "object": "model", "created": served.created, "owned_by": "nanostack",
                "block_size": served.config.block_size, "vocab_size": served.config.vocab_size,
                "chat_template": served.chat_template}

    def check_model(name: str) -> None:
        if name != served.id:
            raise APIError(404, f"model {name!r} does not exist; this server serves {served.id!r}", "model",
                           "model_not_found")

    @router.get("/v1/models", response_model=ModelList, responses={401: ERRORS[401]}, summary="The served model")
    async def list_models():
        return {"object": "list", "data": [model_card()]}

    @router.get("/v1/models/{model_id}", response_model=ModelCard, responses={401: ERRORS[401], 404: ERRORS[404]},
                summary="One model by id")
    async def get_model(model_id: str):
        check_model(model_id)
        return model_card()

    @router.post("/v1/completions", response_model=None, summary="Complete a prompt (text or token ids)",
                 responses={200: {"model": Completion, "content": SSE_DOC,
                                  "description": "a text_completion, or its stream when stream is true"},
                            **ERRORS})
    async def completions(body: CompletionRequest, request: Request):
        check_model(body.model)
        texts = body.prompt if isinstance(body.prompt, list) else [body.prompt]
        if texts and isinstance(texts[0], int):
            texts = [texts]  # one prompt of token ids
        prompts = []
        for item in texts:
            if isinstance(item, str):
                prompts.append(Prompt(served.encode(item), item))
            else:
                prompts.append(Prompt(served.check_length(list(item)), served.decode_text(item)))
        echo_scores = body.echo and body.logprobs is not None
        fmt = CompletionFormat("cmpl-" + secrets.token_hex(12), served.id, served.tokenizer, body.logprobs,
                               bool(body.echo))
        sampling = sampling_of(body, body.max_tokens if body.max_tokens is not None else 16, body.logprobs)
        return await run_call(request, "completions", fmt, prompts, sampling, body,
                              body.logprobs if echo_scores else None)

    @router.post("/v1/chat/completions", response_model=None, summary="Answer a conversation",
                 responses={200: {"model": ChatCompletion, "content": SSE_DOC,
                                  "description": "a chat.completion, or its chat.completion.chunk stream"},
                            **ERRORS})
    async def chat_completions(body: ChatRequest, request: Request):
        check_model(body.model)
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", "top_logprobs", "invalid_value")
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        ids, stops = served.chat_ids(messages)
        limit = served.limits.max_tokens
        max_tokens = next((v for v in (body.max_completion_tokens, body.max_tokens) if v is not None), limit)
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        fmt = ChatFormat("chatcmpl-" + secrets.token_hex(12), served.id, served.tokenizer, logprobs, False)
        sampling = sampling_of(body, max_tokens, logprobs, extra_stops=stops)
        return await run_call(request, "chat", fmt, [Prompt(ids, served.decode_text(ids))], sampling, body, None)

    def sampling_of(body, max_tokens: int, logprobs, extra_stops=()) -> Sampling:
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        temperature = 1.0 if body.temperature is None else body.temperature
        top_p = body.top_p if body.top_p is not None and body.top_p < 1 else None
        return Sampling(max_tokens, RowSettings(temperature, body.top_k, top_p), body.seed, logprobs,
                        tuple(stops) + tuple(extra_stops), body.n or 1)

    async def run_call(request, endpoint, fmt, prompts, sampling, body, score_top):
        state = CallState(prompts, sampling.n)
        if served.settings.log_requests:
            log.info("%s %s prompt=%r", fmt.id, endpoint, [p.text for p in prompts])
        if telemetry is not None and score_top is None:
            score_top = 0  # telemetry keeps the model's loss on every prompt
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()
        jobs = [Job(p.ids, sampling, loop, i * sampling.n, score_top, queue) for i, p in enumerate(prompts)]
        try:
            for job in jobs:
                served.engine.submit(job)
        except QueueFull as e:
            cancel(jobs)
            raise APIError(503, f"server busy: {e}", None, "queue_full", {"Retry-After": "1"}) from None
        watcher = asyncio.create_task(watch_disconnect(request, jobs, queue))
        handed_over = False
        try:
            if not body.stream:
                while not state.complete:
                    event = await next_event(queue, jobs)
                    if event is GONE:
                        return Response(status_code=499)  # nobody reads it
                    state.add(event)
                return JSONResponse(fmt.body(state))
            pending = []
            while state.admitted < len(jobs):  # wait for admission: errors until then are real statuses
                event = await next_event(queue, jobs)
                if event is GONE:
                    return Response(status_code=499)
                pending.append(event)
                if isinstance(event, Admitted):
                    state.add(event)
            watcher.cancel()
            handed_over = True
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(stream(fmt, state, pending, queue, jobs, include_usage, endpoint),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        finally:
            watcher.cancel()
            if not handed_over:
                cancel(jobs)
                record(endpoint, fmt, state)

    async def stream(fmt, state, pending, queue, jobs, include_usage, endpoint):
        try:
            for event in pending:
                if isinstance(event, Admitted):
                    for chunk in fmt.opening(state, event.first_index // state.n):
                        yield chunk
                else:
                    for chunk in emit(fmt, state, event):
                        yield chunk
            while not state.complete:
                event = await queue.get()
                if isinstance(event, Refused):
                    yield sse({"error": {"message": event.message, "type": "server_error", "param": None,
                                         "code": event.code}})
                    return
                for chunk in emit(fmt, state, event):
                    yield chunk
            if include_usage:
                yield fmt.usage_chunk(state)
            yield DONE
        finally:  # also when the client disconnects: Starlette cancels this generator
            cancel(jobs)
            record(endpoint, fmt, state)

    def emit(fmt, state, event):
        state.add(event)
        if isinstance(event, Token):
            yield from fmt.token(state, event)
        elif isinstance(event, Finished):
            yield from fmt.finished(state, event)

    def record(endpoint, fmt, state) -> None:
        if telemetry is not None and state.admitted:
            telemetry.record_call(served.id, endpoint, fmt.id, state, served.tokenizer)

    return router


async def next_event(queue: asyncio.Queue, jobs: list):
    event = await queue.get()
    if isinstance(event, Refused):
        cancel(jobs)
        headers = {"Retry-After": "1"} if event.status == 503 else None
        raise APIError(event.status, event.message, None, event.code, headers)
    return event


async def watch_disconnect(request: Request, jobs: list, queue: asyncio.Queue) -> None:
    """The request's body is read; the next message the server sends it is http.disconnect."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel(jobs)
            queue.put_nowait(GONE)
            return


def cancel(jobs: list) -> None:
    for job in jobs:
        job.cancel()
