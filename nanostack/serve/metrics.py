"""Prometheus metrics of one server (its own registry, so two servers in one process stay apart):
requests by endpoint and status, time to the response's start by status, tokens, busy rows, queue length, time to first token, inter-token
latency, request timeouts, and the process's memory (RSS)."""
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from nanostack.serve.engine import Observer

RESPONSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1)
ENDPOINTS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")


class ServerMetrics(Observer):
    def __init__(self):
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes and friends
        self.requests = Counter("nanostack_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("nanostack_prompt_tokens", "prompt tokens received", registry=r)
        self.completion_tokens = Counter("nanostack_completion_tokens", "tokens generated", registry=r)
        self.timeouts = Counter("nanostack_request_timeouts", "rows finished by --request-timeout", registry=r)
        self.rows = Gauge("nanostack_rows_active", "rows of the batch in use", registry=r)
        self.waiting = Gauge("nanostack_queue_waiting", "jobs waiting for a row", registry=r)
        self.max_batch = Gauge("nanostack_rows_max", "rows of the batch (--max-batch)", registry=r)
        self.response = Histogram("nanostack_response_start_seconds", "request reaching the app to response start "
                                  "(a stream's start: its admission)", ["status"], registry=r,
                                  buckets=RESPONSE_BUCKETS)
        self.ttft = Histogram("nanostack_time_to_first_token_seconds", "arrival to first token", registry=r,
                              buckets=TTFT_BUCKETS)
        self.itl = Histogram("nanostack_inter_token_latency_seconds", "time between tokens of one choice",
                             registry=r, buckets=ITL_BUCKETS)

    def watch(self, engine) -> None:
        self.rows.set_function(lambda: engine.busy_rows)
        self.waiting.set_function(lambda: engine.waiting)
        self.max_batch.set(engine.max_batch)

    # Observer: called on the engine thread (prometheus_client is thread-safe)
    def prompt(self, count):
        self.prompt_tokens.inc(count)

    def first_token(self, seconds):
        self.ttft.observe(seconds)

    def token_gap(self, seconds):
        self.itl.observe(seconds)

    def tokens(self, count):
        self.completion_tokens.inc(count)

    def timed_out(self):
        self.timeouts.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class CountRequests:
    """ASGI middleware: count every response by endpoint (known paths only, so labels stay few) and status."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "/api" if path.startswith("/api/") else "other"
        arrived = time.perf_counter()

        async def counting(message):
            if message["type"] == "http.response.start":
                status = str(message["status"])
                self.metrics.requests.labels(endpoint, status).inc()
                self.metrics.response.labels(status).observe(time.perf_counter() - arrived)
            await send(message)

        await self.app(scope, receive, counting)
