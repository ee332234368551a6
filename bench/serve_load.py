"""Benchmark: `nanostack serve` under load, on loopback only, bounded in requests and time.

    python bench/serve_load.py [--streams 100] [--tokens 64] [--rounds 3] [--device cpu]

A cpu_small-shaped run (4 layers, 128 wide, block 64, char-level tiny shakespeare; 2 training steps:
speed does not depend on the weights) is served by `nanostack serve` in a child process:
  1. at --max-batch 1 (one row: a plain queue, as nanochat served) and at the default batch, the same
     run: --streams concurrent streams of --tokens tokens each; errors, tokens/s, time to first token,
     inter-token latency, end-to-end, /health latency while loaded (one probe every 100 ms);
  2. at the default batch, --rounds rounds more: the server's RSS after each (memory drift);
  3. 400 requests at once against --max-queue 64: how fast the excess gets its 503;
  4. the end state: rows busy and jobs waiting (both should be 0).
Prints one JSON line per measurement, then a summary against the budgets of issue 14. The machine
is whatever it is: run it on a quiet machine, and compare rows of the same run only.

The client speaks HTTP/1.1 over asyncio streams itself: httpx's AsyncClient needed 7.5 s to send 400
concurrent requests to a bare FastAPI app that raw asyncio streams served in 0.9 s, so it would have
measured itself.
"""
import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BUDGETS = {"errors": 0, "speedup_vs_one_row": 2.5, "itl_p99_ms": 150, "ttft_p99_s": 6.0, "health_p99_ms": 250,
           "rss_drift_mb": 10, "overflow_503_p99_ms": 50}
MAX_REQUESTS, MAX_SECONDS = 400, 300


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def make_run(folder: Path) -> Path:
    from nanostack.train import train  # noqa: PLC0415

    run = folder / "cpu_small"
    train(run, {"max_iters": 2, "eval_interval": 2, "eval_iters": 1, "ckpt_interval": 2, "device": "cpu",
                "data": "shakespeare"}, preset="cpu_small", log=lambda *a: None)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`nanostack serve` in a child process on a loopback port."""

    def __init__(self, run: Path, device: str, *flags):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "nanostack", "serve", str(run), "--port", str(self.port), "--device", device,
               "--queue-timeout", "290", *flags]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.2)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def share_503_within(self, seconds: float):
        """The share of 503s the server started answering within `seconds` of the request reaching the app
        (its Prometheus histogram): the server's part of the latency, without the connection queue."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        le = re.search(r'nanostack_response_start_seconds_bucket\{le="' + str(seconds) + r'",status="503"\} (\S+)', text)
        total = re.search(r'nanostack_response_start_seconds_count\{status="503"\} (\S+)', text)
        return round(float(le.group(1)) / float(total.group(1)), 4) if le and total and float(total.group(1)) else None

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def http(port, method, path, body=None, on_event=None, sent=None):
    """One HTTP/1.1 request on a new loopback connection: (status, headers, body). With on_event, the body
    is an event stream (chunked): on_event(data) is called for each `data:` line as it arrives. `sent`
    (a list) gets the time the request was written."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        payload = json.dumps(body).encode() if body is not None else b""
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        await writer.drain()
        if sent is not None:
            sent.append(time.perf_counter())
        status = int((await reader.readline()).split()[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            data, pending = b"", b""
            while (size := int((await reader.readline()).strip() or b"0", 16)) > 0:
                chunk = (await reader.readexactly(size + 2))[:-2]
                if on_event is None:
                    data += chunk
                    continue
                pending += chunk
                *events, pending = pending.split(b"\n\n")
                for event in events:
                    if event.startswith(b"data: "):
                        on_event(event[6:].decode())
            return status, headers, data
        return status, headers, await reader.readexactly(int(headers.get("content-length", 0)))
    finally:
        writer.close()


async def one_stream(port, tokens, seed):
    """(ttft_s, [inter-token gaps], e2e_s, tokens received) of one streamed completion, or an error string."""
    body = {"model": "cpu_small", "prompt": "\n", "max_tokens": tokens, "temperature": 1.0, "seed": seed,
            "stream": True}
    t0 = time.perf_counter()
    times, errors = [], []

    def on_event(data):
        if data.startswith("{"):
            (errors if '"error"' in data[:10] else times).append(time.perf_counter())
    try:
        status, _, _ = await http(port, "POST", "/v1/completions", body, on_event)
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        return type(e).__name__
    if status != 200 or errors:
        return f"status {status}" if status != 200 else "error event"
    if len(times) < tokens:
        return f"short stream ({len(times)} of {tokens})"
    return times[0] - t0, [b - a for a, b in zip(times, times[1:])], times[-1] - t0, len(times)


async def probe_health(port, stop, out):
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            await http(port, "GET", "/health")
            out.append(time.perf_counter() - t0)
        except OSError:
            out.append(float("inf"))
        await asyncio.sleep(0.1)


async def load(port, streams, tokens):
    stop, health = asyncio.Event(), []
    prober = asyncio.create_task(probe_health(port, stop, health))
    t0 = time.perf_counter()
    results = await asyncio.wait_for(asyncio.gather(*(one_stream(port, tokens, i) for i in range(streams))),
                                     MAX_SECONDS)
    wall = time.perf_counter() - t0
    stop.set()
    await prober
    good = [r for r in results if not isinstance(r, str)]
    gaps = [g for r in good for g in r[1]]
    return {"streams": streams, "errors": len(results) - len(good),
            "error_kinds": sorted({r for r in results if isinstance(r, str)}),
            "tokens_per_s": round(sum(r[3] for r in good) / wall, 1), "wall_s": round(wall, 2),
            "ttft_p50_s": round(percentile([r[0] for r in good], 50), 3),
            "ttft_p99_s": round(percentile([r[0] for r in good], 99), 3),
            "itl_p50_ms": round(1000 * percentile(gaps, 50), 1), "itl_p99_ms": round(1000 * percentile(gaps, 99), 1),
            "e2e_p50_s": round(percentile([r[2] for r in good], 50), 2),
            "e2e_p99_s": round(percentile([r[2] for r in good], 99), 2),
            "health_p99_ms": round(1000 * percentile(health, 99), 1), "health_probes": len(health)}


async def overflow(port, requests):
    """Fire `requests` at once; (status, seconds from the burst's start, seconds from this request's
    own send, Retry-After) of each. The first includes the client's own queue of 400 connects."""
    t0 = time.perf_counter()

    async def one(i):
        sent = []
        status, headers, _ = await http(port, "POST", "/v1/completions",
                                        {"model": "cpu_small", "prompt": "\n", "max_tokens": 64, "seed": i},
                                        sent=sent)
        done = time.perf_counter()
        return status, done - t0, done - sent[0], headers.get("retry-after")
    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(requests))), MAX_SECONDS)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    assert args.streams * args.rounds <= MAX_REQUESTS, "bounded: at most 400 requests a phase"

    def emit(row):
        print(json.dumps(row), flush=True)
        return row

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("NANOSTACK_CACHE_DIR", str(Path(tmp) / "cache"))
        run = make_run(Path(tmp))
        emit({"machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
              "model": "cpu_small (4x128, block 64, char)"})
        server = Server(run, args.device, "--max-batch", "1")
        try:
            one = emit({"case": "max_batch_1", **asyncio.run(load(server.port, args.streams, args.tokens))})
        finally:
            server.stop()
        server = Server(run, args.device)
        try:
            max_batch = server.health()["max_batch"]
            asyncio.run(load(server.port, 4, 8))  # warm-up
            rss = [server.rss_mb()]
            rounds = []
            for i in range(args.rounds):
                rounds.append(emit({"case": f"max_batch_{max_batch}", "round": i + 1,
                                    **asyncio.run(load(server.port, args.streams, args.tokens))}))
                rss.append(server.rss_mb())
            emit({"case": "rss_mb", "baseline": round(rss[0], 1), "after_rounds": [round(r, 1) for r in rss[1:]]})
            end = server.health()
        finally:
            server.stop()
        server = Server(run, args.device, "--max-queue", "64")
        try:
            results = asyncio.run(overflow(server.port, MAX_REQUESTS))
            time.sleep(0.5)
            end_overflow = server.health()
            in_app = server.share_503_within(0.05)
        finally:
            server.stop()
        refused = [t for status, _, t, _ in results if status == 503]
        from_burst = [t for status, t, _, _ in results if status == 503]
        ms = lambda values, q: round(1000 * percentile(values, q), 1) if values else None  # noqa: E731
        emit({"case": "overflow", "requests": MAX_REQUESTS, "max_queue": 64,
              "ok": sum(r[0] == 200 for r in results), "refused_503": len(refused),
              "retry_after": sorted({r[3] for r in results if r[0] == 503}),
              "other": sorted({r[0] for r in results if r[0] not in (200, 503)}),
              "p50_ms_503_from_send": ms(refused, 50), "p99_ms_503_from_send": ms(refused, 99),
              "p50_ms_503_from_burst_start": ms(from_burst, 50), "p99_ms_503_from_burst_start": ms(from_burst, 99),
              "share_503_within_50ms_in_the_server": in_app})
        median = sorted(r["tokens_per_s"] for r in rounds)[len(rounds) // 2]
        summary = {
            "errors": one["errors"] + sum(r["errors"] for r in rounds),
            "speedup_vs_one_row": round(median / one["tokens_per_s"], 2),  # the median round
            "itl_p99_ms": max(r["itl_p99_ms"] for r in rounds),
            "ttft_p99_s": max(r["ttft_p99_s"] for r in rounds),
            "health_p99_ms": max(r["health_p99_ms"] for r in rounds),
            "rss_drift_mb": round(max(rss[1:]) - min(rss[1:]), 1),
            "overflow_503_p99_ms": ms(refused, 99),
            "end_state": {"active": end["active"], "waiting": end["waiting"],
                          "after_overflow": [end_overflow["active"], end_overflow["waiting"]]}}
        verdict = {k: (summary[k] >= v if k == "speedup_vs_one_row" else summary[k] <= v)
                   for k, v in BUDGETS.items() if summary.get(k) is not None}
        emit({"summary": summary, "budgets": BUDGETS, "within_budget": verdict})


if __name__ == "__main__":
    main()
