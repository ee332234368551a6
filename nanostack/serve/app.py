"""The FastAPI application of one server: the OpenAI endpoints, the dashboard's data, the page,
/health, /metrics, /llms.txt and /openapi.json, inside the security middleware.

Middleware, outermost first: request counting, the Host allow-list, CORS (only with exact
--cors-origin values), the bearer token, the page's security headers; FastAPI's own body limit
answers 413 past --max-body. /docs stays off (Swagger UI loads from a CDN).
"""
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from nanostack import __version__
from nanostack.serve.api_errors import APIError, on_api_error, on_http_error, on_validation_error
from nanostack.serve.dashboard import make_dashboard
from nanostack.serve.llms_txt import llms_txt
from nanostack.serve.metrics import CountRequests, ServerMetrics
from nanostack.serve.openai_api import make_router
from nanostack.serve.schemas import Health
from nanostack.serve.security import BearerAuth, HostAllowList, SecurityHeaders, ShedWhenFull

STATIC = Path(__file__).resolve().parent / "static"


def build_app(served, metrics: ServerMetrics, telemetry=None, runs_root=None) -> FastAPI:
    settings = served.settings

    @asynccontextmanager
    async def lifespan(app):
        if not served.engine.thread.is_alive():
            served.engine.start()
        yield
        served.engine.stop(settings.shutdown_grace)
        if telemetry is not None:
            telemetry.close()

    app = FastAPI(title=f"nanostack serve: {served.id}", version=__version__, docs_url=None, redoc_url=None,
                  max_body_size=served.limits.max_body, lifespan=lifespan)
    app.state.served = served
    app.state.telemetry = telemetry
    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.include_router(make_router(served, telemetry))
    root = Path(runs_root) if runs_root is not None else served.run.path.parent
    app.include_router(make_dashboard(root, served.run.path.name if served.run.path.parent.resolve() == root.resolve()
                                      else None))
    metrics.watch(served.engine)

    @app.get("/health", response_model=Health, summary="Liveness and load; no token needed")
    async def health():
        return {"status": "ok", "model": served.id, "device": served.device, "active": served.engine.busy_rows,
                "waiting": served.engine.waiting, "max_batch": served.engine.max_batch}

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {}}}})
    async def prometheus():
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/llms.txt", response_class=PlainTextResponse, summary="This API in Markdown, for agents",
             responses={200: {"content": {"text/markdown": {}}}})
    async def llms():
        return Response(llms_txt(app.openapi(), served.id, served.limits, settings),
                        media_type="text/markdown; charset=utf-8")

    @app.get("/", response_class=FileResponse, include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def openapi():
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for methods in spec["paths"].values():  # FastAPI's 422 is answered as a 400 (api_errors.py)
                for op in methods.values():
                    op["responses"].pop("422", None)
                    if op.get("parameters") or op.get("requestBody"):
                        op["responses"].setdefault("400", {"description": "invalid request",
                                                           "content": {"application/json": {"schema": {
                                                               "$ref": "#/components/schemas/Error"}}}})
            for name in ("HTTPValidationError", "ValidationError"):
                spec.get("components", {}).get("schemas", {}).pop(name, None)
            if settings.api_key:
                spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                for path, methods in spec["paths"].items():
                    if path.startswith(("/v1/", "/api/", "/metrics")):
                        for op in methods.values():
                            op["security"] = [{"bearer": []}]
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # what FastAPI's /openapi.json route serves

    # middleware: the last added runs first
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ShedWhenFull, engine=served.engine)
    app.add_middleware(BearerAuth, token=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(HostAllowList, allowed=settings.allowed_hosts)
    app.add_middleware(CountRequests, metrics=metrics)
    return app
