"""`nanostack serve RUN_DIR`: check the settings, load the run, bind the port, run uvicorn.

Every mistake a user can make here (a missing or damaged run, a port in use, a bad token file, a
public --host without a token) is a UserError before anything is served. The socket is bound
here, not by uvicorn, so a port in use is one line, not a log. Ctrl-C stops admissions and gives
requests in flight --shutdown-grace seconds.
"""
import errno
import logging
import socket
import threading

from nanostack.errors import UserError
from nanostack.run import open_run
from nanostack.serve.settings import ServeSettings, check_settings

EXTRA = "the server needs the serve extra: pip install 'nanostack[serve]'"


def require_extra() -> None:
    try:
        import fastapi  # noqa: F401, PLC0415
        import prometheus_client  # noqa: F401, PLC0415
        import uvicorn  # noqa: F401, PLC0415
    except ImportError:
        raise UserError(EXTRA, "then run the command again") from None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it: no 40 ms Nagle stalls
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use", "stop the other server or pick --port") from None
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror})", "check --host and --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def create_server(run_dir, settings: ServeSettings):
    """(app, served, settings) for a run: loaded, not yet listening. Raises UserError for bad input."""
    require_extra()
    check_settings(settings)
    from nanostack.serve.app import build_app  # noqa: PLC0415 (needs the extra)
    from nanostack.serve.metrics import ServerMetrics  # noqa: PLC0415
    from nanostack.serve.served import ServedModel  # noqa: PLC0415
    from nanostack.serve.telemetry import Telemetry  # noqa: PLC0415

    run = open_run(run_dir)
    metrics = ServerMetrics()
    served = ServedModel(run, settings, observer=metrics)
    telemetry = None
    if settings.telemetry is not None:
        try:
            telemetry = Telemetry(settings.telemetry)
        except ImportError:
            raise UserError("--telemetry writes Parquet with duckdb, which is not installed",
                            "pip install duckdb (or drop --telemetry)") from None
        except OSError as e:
            raise UserError(f"cannot write telemetry to {settings.telemetry} ({e.strerror})",
                            "give a writable folder") from None
    app = build_app(served, metrics, telemetry, settings.runs_root)
    return app, served


def uvicorn_server(app, settings: ServeSettings, log_level: str = "info"):
    import uvicorn  # noqa: PLC0415

    config = uvicorn.Config(app, limit_concurrency=settings.limit_concurrency, timeout_keep_alive=5,
                            timeout_graceful_shutdown=int(settings.shutdown_grace), log_level=log_level,
                            access_log=settings.log_requests, server_header=False, lifespan="on")
    return uvicorn.Server(config)


def serve_run(run_dir, settings: ServeSettings, say=print) -> None:
    """Serve a run until Ctrl-C."""
    require_extra()
    check_settings(settings)
    open_run(run_dir)  # a missing run is named before the port is
    sock = bind(settings.host, settings.port)
    try:
        app, served = create_server(run_dir, settings)
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    s = served.settings
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    host = f"[{settings.host.strip('[]')}]" if ":" in settings.host.strip("[]") else settings.host
    say(f"serving {served.run.path} as model {served.id!r} on {served.device} at http://{host}:{port}/")
    say(f"batch of {s.max_batch} rows, KV cache {served.kv_bytes / 2 ** 20:.1f} MiB; queue {s.max_queue}; "
        f"auth {'on (bearer token)' if s.api_key else 'off'}; "
        f"telemetry {'on: ' + str(s.telemetry) if s.telemetry else 'off (--telemetry DIR records requests)'}; "
        f"prompts {'logged' if s.log_requests else 'not logged'}")
    try:
        uvicorn_server(app, settings).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the server has already stopped cleanly
        pass
    say("stopped")


class BackgroundServer:
    """A server on a free loopback port in a thread of this process (tests and benchmarks)."""

    def __init__(self, run_dir, settings: ServeSettings):
        import torch  # noqa: PLC0415

        self.torch_threads = torch.get_num_threads()  # the server sets its own; given back on exit
        self.app, self.served = create_server(run_dir, settings)
        self.sock = bind(settings.host, settings.port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{settings.host}:{self.port}"
        self.server = uvicorn_server(self.app, settings, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        import time  # noqa: PLC0415

        for _ in range(500):
            if self.server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc):
        import torch  # noqa: PLC0415

        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        torch.set_num_threads(self.torch_threads)
