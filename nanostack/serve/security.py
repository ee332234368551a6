"""Safe defaults, as ASGI middleware and one path check.

- Host allow-list: a request whose Host header is not this machine's (or an --allowed-host) gets
  400. Without it a web page on evil.example could reach a loopback server through DNS rebinding.
- Bearer token (when one is configured) on /v1, /api and /metrics, compared in constant time.
- Page headers: a strict Content-Security-Policy (no inline script, nothing from elsewhere),
  nosniff, no-referrer.
- Runs are addressed by name under --runs-root, never by path: `run_path` refuses anything that is
  not a plain name or that resolves (through a symlink) outside the root.
"""
import json
import re
import secrets
from pathlib import Path

from nanostack.serve.api_errors import error_body

PROTECTED = ("/v1/", "/api/", "/metrics")
CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


async def send_error(send, status: int, message: str, code: str, headers=()) -> None:
    body = json.dumps(error_body(status, message, None, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def host_name(value: str) -> str:
    """The host of a Host header, without its port ("[::1]:8000" -> "[::1]")."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[:value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostAllowList:
    def __init__(self, app, allowed):
        self.app = app
        self.allowed = {"localhost", "127.0.0.1", "[::1]"} | {h.lower() for h in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(host) not in self.allowed:
                await send_error(send, 400, "the Host header names a host this server does not answer to; "
                                            "start it with --allowed-host NAME to add one", "invalid_host")
                return
        await self.app(scope, receive, send)


class BearerAuth:
    def __init__(self, app, token: str | None):
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope, receive, send):
        if self.expected and scope["type"] == "http" and scope["path"].startswith(PROTECTED):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(given, self.expected):
                await send_error(send, 401, "missing or wrong API key: send Authorization: Bearer <token>",
                                 "invalid_api_key", [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


class ShedWhenFull:
    """A generation request that arrives while the queue is full gets its 503 before its body is read
    and validated: under a burst, refusing must stay cheaper than serving (the engine re-checks on submit)."""

    def __init__(self, app, engine):
        self.app, self.engine = app, engine

    async def __call__(self, scope, receive, send):
        if (scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/")
                and self.engine.waiting >= self.engine.max_queue):
            await send_error(send, 503, f"server busy: the queue is full ({self.engine.max_queue} requests waiting)",
                             "queue_full", [(b"retry-after", b"1")])
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for name, value in ((b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                                    (b"referrer-policy", b"no-referrer")):
                    if name not in names:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def run_path(root: Path, name: str):
    """The folder of run `name` directly under root, or None when the name is not a plain name or
    leads outside root (a symlink out)."""
    if not RUN_NAME.fullmatch(name) or name in (".", ".."):
        return None
    root = root.resolve()
    path = (root / name).resolve()
    return path if path.parent == root and path.is_dir() else None
