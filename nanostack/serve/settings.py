"""ServeSettings: every knob of `nanostack serve`, with the defaults of the specification, and the
checks a mistaken command line fails (one line, exit 2) before anything is loaded."""
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from nanostack.errors import UserError
from nanostack.serve.schemas import Limits

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    runs_root: Path | None = None        # the dashboard's runs (default: the run's parent folder)
    device: str = "auto"
    checkpoint: str = "best"
    max_batch: int | None = None         # rows of the KV cache: 32 on CPU, 256 on GPU
    max_queue: int = 256
    prefill_budget: int | None = None    # prompt tokens admitted per step: 512 on CPU, 4096 on GPU
    queue_timeout: float = 30.0
    request_timeout: float = 300.0
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    allowed_hosts: tuple = ()
    cors_origins: tuple = ()
    insecure_no_auth: bool = False
    log_requests: bool = False
    telemetry: Path | None = None
    limit_concurrency: int = 512
    shutdown_grace: float = 10.0

    def for_device(self, device: str) -> "ServeSettings":
        """The device-dependent defaults filled in."""
        gpu = device.startswith("cuda")
        return ServeSettings(**{**self.__dict__, "device": device,
                                "max_batch": self.max_batch or (256 if gpu else 32),
                                "prefill_budget": self.prefill_budget or (4096 if gpu else 512)})


def is_loopback(host: str) -> bool:
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_api_key(key_file) -> str | None:
    """The bearer token: --api-key-file, else $NANOSTACK_API_KEY, else None (never from argv)."""
    if key_file is not None:
        path = Path(key_file)
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read the API key file {path} ({type(e).__name__})",
                            "give a readable UTF-8 file holding the token") from None
        if not re.fullmatch(r"[\x21-\x7e]{16,512}", key):
            raise UserError(f"the API key file {path} does not hold one token of 16-512 printable characters",
                            "write a random token into it, e.g. `python -c 'import secrets; "
                            "print(secrets.token_urlsafe(32))' > FILE`")
        return key
    key = os.environ.get("NANOSTACK_API_KEY", "").strip()
    if key and not re.fullmatch(r"[\x21-\x7e]{16,512}", key):
        raise UserError("NANOSTACK_API_KEY is not one token of 16-512 printable characters", "set a longer token")
    return key or None


def check_settings(s: ServeSettings) -> None:
    if not 0 <= s.port <= 65535:
        raise UserError(f"--port {s.port} is not a port", "use 1-65535 (0: any free port)")
    if not is_loopback(s.host) and s.api_key is None and not s.insecure_no_auth:
        raise UserError(f"--host {s.host} reaches beyond this machine but no API key is set",
                        "set NANOSTACK_API_KEY or --api-key-file, or pass --insecure-no-auth if you mean it")
    for origin in s.cors_origins:
        if origin == "*" or not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
            raise UserError(f"--cors-origin {origin!r} is not an exact origin",
                            "give scheme://host[:port], e.g. http://localhost:3000; '*' is not allowed")
    numbers = {"--max-batch": s.max_batch, "--max-queue": s.max_queue, "--prefill-budget": s.prefill_budget,
               "--max-tokens-limit": s.limits.max_tokens, "--max-prompt-tokens": s.limits.max_prompt_tokens}
    for flag, value in numbers.items():
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}", "give a positive number")
    if not (s.queue_timeout > 0 and s.request_timeout > 0):
        raise UserError("--queue-timeout and --request-timeout must be positive", "give seconds, e.g. 30")
    if s.runs_root is not None and not Path(s.runs_root).is_dir():
        raise UserError(f"--runs-root {s.runs_root} is not a folder", "give the folder that holds your runs")
