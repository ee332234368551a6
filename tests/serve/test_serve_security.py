"""Safe by default and frugal with rows: a client that leaves frees its row within a step (and one that
leaves while queued is never prefilled); a full queue answers 503 at once; the bearer token, the Host
allow-list, CORS and run names hold against the usual attacks; the page carries a strict CSP."""
import time

import httpx
import pytest

from nanostack.serve.server import BackgroundServer

from serve_helpers import settings, wait_idle

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def stream_a_few_events(url, body, events=3):
    """Open a stream, read `events` data events, then drop the connection."""
    seen = 0
    with httpx.Client(timeout=30) as c, c.stream("POST", url, json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen == events:
                    break
    return seen


def test_a_client_that_leaves_frees_its_row_within_2s(server, engine_idle):
    engine_idle.step_delay = 0.05  # a slow engine, so the stream is still running when the client leaves
    body = {"model": "tiny", "prompt": "the", "max_tokens": 2000, "stream": True}
    assert stream_a_few_events(server.url + "/v1/completions", body) == 3
    left = time.monotonic()
    while engine_idle.busy_rows and time.monotonic() - left < 2:
        time.sleep(0.01)
    assert engine_idle.busy_rows == 0, "the row of a disconnected client is still decoding"
    tokens = engine_idle.generated
    time.sleep(0.3)
    assert engine_idle.generated == tokens  # and nothing is generated for it any more


def test_a_client_that_leaves_while_queued_is_never_prefilled(tiny_run):
    with BackgroundServer(tiny_run, settings(max_batch=1)) as srv:
        engine = srv.served.engine
        engine.step_delay = 0.02
        with httpx.Client(timeout=30) as c, c.stream("POST", srv.url + "/v1/completions",
                                                     json={"model": "tiny", "prompt": "a", "max_tokens": 2000,
                                                           "stream": True}) as first:
            lines = first.iter_lines()  # kept: dropping the iterator would close the connection
            next(lines)
            admitted = engine.admitted
            try:  # the second waits for the row; give up on it after 0.3 s
                httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "b", "max_tokens": 5},
                           timeout=0.3)
            except httpx.TimeoutException:
                pass
            deadline = time.monotonic() + 2
            while engine.waiting and time.monotonic() < deadline:
                time.sleep(0.01)
        wait_idle(engine)
        assert engine.admitted == admitted  # the queued one was dropped, not prefilled


def test_a_full_queue_answers_503_with_retry_after_at_once(tiny_run):
    with BackgroundServer(tiny_run, settings(max_batch=1, max_queue=2)) as srv:
        engine = srv.served.engine
        engine.step_delay = 0.1  # the decoding request holds the one row for seconds, even on a loaded machine
        body = {"model": "tiny", "prompt": "a", "max_tokens": 200}
        with httpx.Client(timeout=60) as c:
            import threading

            threads = [threading.Thread(target=c.post, args=(srv.url + "/v1/completions",), kwargs={"json": body})
                       for _ in range(3)]  # one decoding, two waiting: the queue is full
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while engine.waiting < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert engine.waiting == 2, "the queue never filled"  # the setup held, so the 503 below is the server's
            t0 = time.monotonic()
            r = c.post(srv.url + "/v1/completions", json=body)
            elapsed = time.monotonic() - t0
            engine.step_delay = 0
            for t in threads:
                t.join()
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_full"
        assert elapsed < 2  # refused at once, not after waiting (the bench measures the real latency)
        wait_idle(engine)


def test_queue_timeout_is_a_503(tiny_run):
    with BackgroundServer(tiny_run, settings(max_batch=1, queue_timeout=0.2)) as srv:
        engine = srv.served.engine
        engine.step_delay = 0.02
        with httpx.Client(timeout=30) as c, c.stream("POST", srv.url + "/v1/completions",
                                                     json={"model": "tiny", "prompt": "a", "max_tokens": 2000,
                                                           "stream": True}) as first:
            lines = first.iter_lines()
            next(lines)
            r = c.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "b", "stream": True})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_timeout"
        wait_idle(engine)


def test_run_names_are_names_not_paths(server, runs_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    link = runs_root / "escape"
    link.symlink_to(outside, target_is_directory=True)
    try:
        for name in ("..", "%2e%2e", "..%2f..%2fetc", "a/b", "%2Fetc%2Fpasswd", "escape", "x%00y", ".hidden",
                     "nope"):
            r = httpx.get(f"{server.url}/api/runs/{name}/metrics", timeout=10)
            assert r.status_code in (400, 404), name
            assert "error" in r.json()
        assert httpx.get(f"{server.url}/api/runs/tiny/metrics", timeout=10).status_code == 200
        names = [run["name"] for run in httpx.get(server.url + "/api/runs", timeout=10).json()["runs"]]
        assert names == ["other", "tiny"]  # the symlink out is not listed
    finally:
        link.unlink()


def test_host_header_must_be_this_machine(server):
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example", ""):
        r = httpx.get(server.url + "/health", headers={"host": host}, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
    for host in ("localhost", "127.0.0.1:8000", "[::1]:8000"):
        assert httpx.get(server.url + "/health", headers={"host": host}, timeout=10).status_code == 200


def test_no_cors_unless_origins_are_given(server, tiny_run):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    r = httpx.options(server.url + "/v1/completions", headers=preflight, timeout=10)
    assert not any(k.lower().startswith("access-control-") for k in r.headers)
    r = httpx.get(server.url + "/v1/models", headers={"Origin": "http://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in r.headers
    with BackgroundServer(tiny_run, settings(cors_origins=("http://localhost:3000",))) as srv:
        ok = httpx.options(srv.url + "/v1/completions", timeout=10,
                           headers={**preflight, "Origin": "http://localhost:3000"})
        assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
        bad = httpx.options(srv.url + "/v1/completions", headers=preflight, timeout=10)
        assert bad.headers.get("access-control-allow-origin") != "http://evil.example"


def test_the_bearer_token_guards_the_api_but_not_the_page(tiny_run):
    key = "k" * 32
    with BackgroundServer(tiny_run, settings(api_key=key)) as srv:
        for path in ("/v1/models", "/api/runs", "/metrics"):
            r = httpx.get(srv.url + path, timeout=10)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            wrong = httpx.get(srv.url + path, headers={"Authorization": "Bearer " + "k" * 31 + "x"}, timeout=10)
            assert wrong.status_code == 401
            assert httpx.get(srv.url + path, headers={"Authorization": "Bearer " + key}, timeout=10).status_code == 200
        for path in ("/", "/health", "/openapi.json", "/llms.txt", "/static/app.js"):
            assert httpx.get(srv.url + path, timeout=10).status_code == 200, path
        import openai

        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0).models.list()
        assert openai.OpenAI(base_url=srv.url + "/v1", api_key=key).models.list().data[0].id == "tiny"


def test_the_page_has_a_strict_content_security_policy(server):
    r = httpx.get(server.url + "/", timeout=10)
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    assert "<script src=\"/static/app.js\"" in r.text and "http" not in r.text.split("<body>")[0].replace(
        "http-equiv", "")  # nothing loaded from elsewhere
    assert httpx.get(server.url + "/docs", timeout=10).status_code == 404  # Swagger UI would load from a CDN


def test_health_and_metrics(server, engine_idle):
    httpx.post(server.url + "/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 3}, timeout=30)
    health = httpx.get(server.url + "/health", timeout=10).json()
    assert health == {"status": "ok", "model": "tiny", "device": "cpu", "active": 0, "waiting": 0, "max_batch": 32}
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for name in ("nanostack_requests_total", "nanostack_completion_tokens_total", "nanostack_rows_active",
                 "nanostack_queue_waiting", "nanostack_time_to_first_token_seconds_bucket",
                 "nanostack_inter_token_latency_seconds_bucket", "process_resident_memory_bytes",
                 "nanostack_response_start_seconds_bucket"):
        assert name in text, name
    assert 'nanostack_requests_total{endpoint="/v1/completions",status="200"}' in text


def test_a_request_past_the_request_timeout_ends_with_length(tiny_run):
    with BackgroundServer(tiny_run, settings(request_timeout=0.3)) as srv:
        srv.served.engine.step_delay = 0.02
        body = {"model": "tiny", "prompt": "a", "max_tokens": 2000}
        choice = httpx.post(srv.url + "/v1/completions", json=body, timeout=30).json()
        assert choice["choices"][0]["finish_reason"] == "length"
        assert 1 <= choice["usage"]["completion_tokens"] < 2000
        assert "nanostack_request_timeouts_total 1.0" in httpx.get(srv.url + "/metrics", timeout=10).text
