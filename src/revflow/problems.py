"""The one place that turns errors into RFC 9457 problem documents."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from revflow.errors import (
    ConcurrentChange,
    DatabaseBusy,
    MalformedJSON,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RevflowError,
    ValidationFailed,
)
from revflow.logging import get_logger

log = get_logger("revflow.http")
PROBLEM_JSON = "application/problem+json"


def problem_response(error: RevflowError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        error.problem(), status_code=error.status, media_type=PROBLEM_JSON, headers=headers
    )


def _pointer(loc: tuple[Any, ...]) -> dict[str, str]:
    """JSON Pointer of a body error; the parameter name of a query, path or header error."""
    where, *rest = loc if loc else ("body",)
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in rest]
    if where == "body":
        return {"pointer": "/" + "/".join(parts) if parts else ""}
    return {"pointer": "/" + "/".join(parts), "parameter": ".".join(parts), "in": str(where)}


def validation_problem(exc: RequestValidationError) -> RevflowError:
    errors = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            ctx = error.get("ctx") or {}
            return MalformedJSON(f"The body is not valid JSON: {ctx.get('error', 'parse error')}")
        errors.append({**_pointer(tuple(error.get("loc", ()))), "message": error.get("msg", "")})
    return ValidationFailed(errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(RevflowError)
    async def _revflow_error(_request: Request, exc: RevflowError) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(validation_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            return problem_response(NotFound("No such route"), headers)
        if exc.status_code == 413:
            return problem_response(PayloadTooLarge("The request body is too large"), headers)
        if exc.status_code == 405:
            return problem_response(
                MethodNotAllowed(f"{_request.method} is not allowed here"), headers
            )
        if exc.status_code == 400:
            # The framework's "error parsing the body" (e.g. JSON nested deeper than the
            # parser allows).
            return problem_response(MalformedJSON(f"The body could not be parsed: {exc.detail}"))
        body = {
            "type": "urn:revflow:problem:http_error",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "code": "http_error",
        }
        return JSONResponse(body, exc.status_code, headers=headers, media_type=PROBLEM_JSON)

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        # A database constraint fired before the commit: a concurrent request won the race.
        log.info("constraint_conflict", error=str(exc.orig))
        return problem_response(
            ConcurrentChange(
                "A concurrent request changed the same object first; read it again and retry"
            )
        )

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database_unavailable", path=request.url.path, error=str(exc.orig))
        return problem_response(
            DatabaseBusy("The database is busy or unreachable; retry"), headers={"Retry-After": "1"}
        )

    app.add_middleware(CatchUnexpected)


class CatchUnexpected:
    """Answer any unexpected exception with a 500 problem document and end it there.

    Starlette's own last-resort handler sends the answer and then re-raises, which makes the
    server drop the keep-alive connection: a client's next request on it fails and cannot tell
    whether its earlier request ran. Ending the exception here keeps the connection usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            log.error("unhandled_error", path=scope.get("path"), exc_info=exc)
            if started:
                raise  # the answer is already on its way: only closing the connection is left
            error = RevflowError("An unexpected error occurred; it was logged")
            await problem_response(error)(scope, receive, send)
