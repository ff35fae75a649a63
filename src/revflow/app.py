"""The ASGI application: routers, problem handlers, body limit, health and metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from fastapi import FastAPI, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import text
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from revflow import problems
from revflow.audit.routes import router as audit_router
from revflow.auth.routes import router as auth_router
from revflow.auth.service import KeyCache
from revflow.config import Settings, get_settings
from revflow.contacts.routes import router as contacts_router
from revflow.db import Database
from revflow.definition.routes import router as definition_router
from revflow.definition.schema import definition_schema
from revflow.engine.clock import Clock, SystemClock
from revflow.errors import BadRequest, PayloadTooLarge, ServerBusy, ValidationFailed
from revflow.executions.routes import router as executions_router
from revflow.kit import strictjson
from revflow.kit.admission import Admission
from revflow.kit.ratelimit import Decision, TokenBuckets
from revflow.kit.routing import shared_routes
from revflow.logging import get_logger
from revflow.migrations.routes import router as migrations_router
from revflow.releases.routes import router as releases_router
from revflow.simulations.routes import router as simulations_router
from revflow.ui import install as install_console
from revflow.webhooks.routes import router as webhooks_router
from revflow.worker import Worker, WorkerHealth, supervise
from revflow.workflows.routes import router as workflows_router

log = get_logger("revflow.app")

# Where `GET /` sends a browser: the web console (its sign-in page when signed out).
HOME = "/ui/workflows"
DOCS_ASSETS = Path(__file__).parent / "static" / "docs"

REQUESTS = Counter("revflow_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("revflow_http_request_seconds", "HTTP request latency", ["method", "route"])


def admitted_in_turn(path: str) -> bool:
    """The requests that take a turn (kit.admission): the API's and the console's pages, not
    the probes, the metrics, the documentation or the console's static files."""
    if path.startswith("/ui/static/"):
        return False
    return path.startswith(("/api/", "/ui"))


AUTHORING = ("/api/v1/workflows", "/api/v1/migrations")
NOT_AUTHORING = ("/enrollments", "/executions")
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def authoring(method: str, path: str) -> bool:
    """The requests of the authoring lane (kit.admission): the changes of workflows, versions,
    drafts, releases, simulations and migrations, and version comparisons; not their other
    reads, nor a workflow's enrollments and executions, contacts, events and the rest."""
    if not path.startswith(AUTHORING) or path.endswith(NOT_AUTHORING):
        return False
    return method not in READS or path.endswith("/versions/compare")


class RefuseInvalidUTF8:
    """Refuse a path or query whose percent-encoded bytes are not UTF-8 (400): decoded lossily,
    three different raw ids would all name the same object."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_path = scope.get("raw_path") or scope["path"].encode()
            for raw in (raw_path, scope.get("query_string", b"")):
                try:
                    unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
                except UnicodeDecodeError:
                    error = BadRequest("The request's path or query is not valid UTF-8")
                    await problems.problem_response(error)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class StrictRequest:
    """Refuse (422, naming where) what no database can store: a NUL character in a query
    parameter, and in a JSON body a NUL or lone surrogate in any string, a number that is
    not finite (NaN, Infinity, 1e400) or nesting deeper than ``strictjson.MAX_DEPTH``. Runs
    inside ``BodyLimit``, so the body it reads is bounded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        errors = self._query(scope)
        if errors:
            await problems.problem_response(ValidationFailed(errors))(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if b"json" not in content_type or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            value, errors = strictjson.checked_body(bytes(body)) if body else (None, [])
        except (ValueError, RecursionError):
            errors = []  # not JSON at all: the route answers 400 malformed_json
        else:
            if body:
                scope.setdefault("state", {})[strictjson.PARSED_BODY] = value
        if errors:
            await problems.problem_response(ValidationFailed(errors))(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _query(scope: Scope) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        query = scope.get("query_string", b"").decode("utf-8", "replace")
        for name, value in parse_qsl(query, keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                where = name.replace("\x00", "\\u0000")
                errors.append(
                    {
                        "pointer": f"/{where}",
                        "parameter": where,
                        "in": "query",
                        "message": "must not contain the NUL character (\\u0000)",
                    }
                )
        return errors


class BodyLimit:
    """Refuse bodies over ``max_request_bytes`` with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit():
            if int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            # The server delivers exactly Content-Length bytes.
            await self.app(scope, receive, send)
            return
        # No Content-Length (a chunked body): read it, up to the limit, before the app runs.
        # Raising from inside ``receive`` instead would reach the framework's body reader
        # wrapped in an ExceptionGroup (by the HTTP middleware) and answer 400, not 413.
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"The body is larger than {self.max_bytes} bytes")
        await problems.problem_response(error)(scope, receive, send)


class RateLimitFields:
    """The RateLimit header fields of draft-ietf-httpapi-ratelimit-headers-06 on every answer
    to a request that paid its account's rate limit (``RateLimit-Limit``, ``-Remaining``,
    ``-Reset``, ``-Policy``), and ``Retry-After`` on a refusal (429)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_fields(message: Message) -> None:
            decision = scope.get("state", {}).get("rate_limit")
            if message["type"] == "http.response.start" and isinstance(decision, Decision):
                headers = MutableHeaders(scope=message)
                headers["RateLimit-Limit"] = str(decision.limit)
                headers["RateLimit-Remaining"] = str(decision.remaining)
                headers["RateLimit-Reset"] = str(decision.reset_seconds)
                headers["RateLimit-Policy"] = f"{decision.limit};w={decision.window_seconds}"
                if not decision.allowed:
                    headers["Retry-After"] = str(decision.retry_after_seconds)
            await send(message)

        await self.app(scope, receive, with_fields)


class Observe:
    """Request metrics by route template, and one log line per request (pure ASGI): method,
    route template (never the raw path or query, which may hold personal data such as an
    external id or an email), status, duration and account."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            REQUESTS.labels(scope["method"], template, status).inc()
            LATENCY.labels(scope["method"], template).observe(elapsed)
            principal = scope.get("state", {}).get("principal")
            (log.warning if status >= 500 else log.info)(
                "request",
                method=scope["method"],
                path=template,
                status=status,
                ms=round(elapsed * 1000, 2),
                account=str(principal.account_id) if principal is not None else None,
            )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: every operation's problems, and the definition's JSON Schema as
    the ``Definition`` component that request bodies refer to."""
    schema = definition_schema(ref_template="#/components/schemas/{model}")
    components = {"Definition": schema, **schema.pop("$defs", {})}
    return problems.openapi_document(app, components)


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, from assets shipped in the package (no
    internet needed), and ``GET /`` sends a browser to ``HOME``."""
    assets = "/docs/assets"
    app.mount(assets, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse(HOME)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="revflow API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="revflow API",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon-32x32.png",
            with_google_fonts=False,
        )


def create_app(
    settings: Settings | None = None,
    db: Database | None = None,
    *,
    clock: Clock | None = None,
    with_worker: bool = False,
) -> FastAPI:
    """Build the application; ``db`` and ``clock`` let tests share an engine and control time.

    ``with_worker`` runs a worker inside the server process (the embedded SQLite mode).
    """
    settings = settings or get_settings()
    owns_db = db is None
    database = db or Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_timeout_s=settings.db_pool_timeout_seconds,
        connect_timeout_s=settings.db_connect_timeout_seconds,
        lock_timeout_ms=0 if with_worker else settings.db_lock_timeout_ms,
        ping_idle_s=settings.db_ping_idle_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None
        stopping = asyncio.Event()
        if with_worker:

            def start() -> Worker:
                return Worker(database, settings, clock=app.state.clock)

            def started(worker: Worker) -> None:
                app.state.worker = worker

            task = asyncio.create_task(
                supervise(start, app.state.worker_health, stopping, on_start=started)
            )
        try:
            yield
        finally:
            if task is not None:
                stopping.set()
                if app.state.worker is not None:
                    app.state.worker.stop()
                await task
            if owns_db:
                await database.dispose()

    app = FastAPI(
        title="revflow",
        version="0.1.0",
        summary="Workflow automation with immutable versions, compare, publish and migration.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.clock = clock or SystemClock()
    limit = settings.rate_limit()
    app.state.rate_limiter = None if limit is None else TokenBuckets(*limit)
    app.state.key_cache = KeyCache(settings.api_key_cache_seconds)
    app.state.worker = None
    app.state.worker_health = WorkerHealth() if with_worker else None
    problems.install(app)
    app.router.routes.extend(
        shared_routes(
            auth_router,
            workflows_router,
            releases_router,
            simulations_router,
            audit_router,
            contacts_router,
            executions_router,
            migrations_router,
            webhooks_router,
            definition_router,
        )
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _serve_docs(app)
    install_console(app, settings)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={
            200: {"description": "The database is reachable"},
            503: {"description": "The database is not reachable"},
        },
    )
    async def readyz() -> JSONResponse:
        try:
            async with database.session() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, 503)
        answer: dict[str, object] = {
            "status": "ok",
            "database": "sqlite" if database.is_sqlite else "postgresql",
        }
        health: WorkerHealth | None = app.state.worker_health
        if health is not None:
            # The in-process worker: a dead one is restarted, and reported until it runs again.
            answer["worker"] = health.as_dict()
            if not health.running:
                answer["status"] = "worker_down"
                return JSONResponse(answer, 503)
        return JSONResponse(answer)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RateLimitFields)
    app.add_middleware(
        Admission,
        limit=settings.concurrent_requests(),
        wait_seconds=settings.api_queue_seconds,
        gated=admitted_in_turn,
        authoring=authoring,
        authoring_limit=settings.authoring_requests(),
        refuse=problems.problem_response(
            ServerBusy("The server is busy; retry"), headers={"Retry-After": "1"}
        ),
    )
    app.add_middleware(Observe)
    app.add_middleware(StrictRequest)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RefuseInvalidUTF8)
    return app
