"""The one place that turns errors into RFC 9457 problem documents, and that documents them.

Each dependency and route declares what it can raise with :func:`raises`; the OpenAPI document
lists, for every operation, the problems of everything it depends on, plus those the framework
answers for it (400 and 413 for a body, 422 for any parameter or body), as
``application/problem+json`` responses of the one ``Problem`` schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
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
    Unauthorized,
    ValidationFailed,
)
from revflow.logging import get_logger

log = get_logger("revflow.http")
PROBLEM_JSON = "application/problem+json"


def problem_response(error: RevflowError, headers: dict[str, str] | None = None) -> JSONResponse:
    if isinstance(error, Unauthorized):
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
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

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            log.error("unhandled_error", path=request.url.path, exc_info=exc)
            return problem_response(RevflowError("An unexpected error occurred; it was logged"))
        log.warning("database_unavailable", path=request.url.path, error=str(exc))
        return problem_response(
            DatabaseBusy("The database is busy or unreachable; retry"), headers={"Retry-After": "1"}
        )

    # The database going away, a connection closed under a request, a pool with no free
    # connection or a row lock held too long: the request did not happen, and may be retried.
    for kind in (DBAPIError, PoolTimeout, ConnectionError, TimeoutError):
        app.add_exception_handler(kind, _unavailable)

    app.add_middleware(CatchUnexpected)


# SQLSTATE classes and codes after which a retry can succeed: 08 connection exception,
# 53 insufficient resources, 57 operator intervention (57014 statement timeout, 57P01 admin
# shutdown, 57P03 cannot connect now), 55P03 lock not available.
_RETRYABLE_SQLSTATE_CLASSES = ("08", "53", "57")
_RETRYABLE_SQLSTATES = ("55P03",)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not serve the request now (not that it refused
    the request's content): a retry later may succeed."""
    if isinstance(exc, OperationalError | PoolTimeout | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", ""))
        if sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES or sqlstate in _RETRYABLE_SQLSTATES:
            return True
        # The driver's "connection is closed" (a backend terminated under the request).
        return type(exc.orig).__name__ in ("InterfaceError", "ConnectionDoesNotExistError")
    return False


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


class ProblemItem(BaseModel):
    """One problem of a request: where it is, and what is wrong there."""

    model_config = ConfigDict(extra="allow")

    pointer: str = Field(
        description="RFC 6901 JSON Pointer into the request body ('' is the whole body); for "
        "a query, path or header parameter, '/' and its name.",
        examples=["/definition/steps/2/next"],
    )
    message: str = Field(examples=["'nurture' is not a step of this definition"])
    parameter: str | None = Field(
        default=None, description="The parameter's name, when the problem is in one."
    )
    in_: Literal["query", "path", "header", "cookie"] | None = Field(
        default=None, alias="in", description="Where that parameter is."
    )


class Problem(BaseModel):
    """An RFC 9457 problem document. Problems carry more members when a client needs them to
    act: ``latest_version`` (``stale_base``), ``max_versions`` (``version_limit``), ``draft``
    (``stale_draft``), ``etag`` (``etag_mismatch``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:revflow:problem:stale_base"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    code: str = Field(
        description="What went wrong, for programs: the end of ``type``.", examples=["stale_base"]
    )
    errors: list[ProblemItem] | None = Field(
        default=None, description="422 only: every problem of the request, located."
    )


_Fn = TypeVar("_Fn", bound=Callable[..., Any])
_RAISES: dict[Callable[..., Any], tuple[type[RevflowError], ...]] = {}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}},
        **{
            f"RateLimit-{name}": {"description": what, "schema": {"type": "string"}}
            for name, what in (
                ("Limit", "Requests (tokens) the account's bucket holds at most"),
                ("Remaining", "Tokens left in the bucket"),
                ("Reset", "Seconds until the bucket is full again"),
                ("Policy", "`<limit>;w=<seconds the bucket takes to fill>`"),
            )
        },
    },
    503: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}},
}
_SCHEMA_REF = "#/components/schemas/Problem"


def raises(*errors: type[RevflowError]) -> Callable[[_Fn], _Fn]:
    """Declare the problems a dependency or route answers, for the OpenAPI document."""

    def declare(fn: _Fn) -> _Fn:
        _RAISES[fn] = _RAISES.get(fn, ()) + errors
        return fn

    return declare


def _declared(dependant: Dependant) -> set[type[RevflowError]]:
    """The problems declared by a dependant and its dependencies, and those its parameters
    imply: a path parameter names an object of the caller's account (404), and any parameter
    can be invalid (422)."""
    found = set(_RAISES.get(dependant.call, ())) if dependant.call is not None else set()
    if dependant.path_params:
        found.add(NotFound)
    if dependant.path_params or dependant.query_params or dependant.header_params:
        found.add(ValidationFailed)
    for sub in dependant.dependencies:
        found |= _declared(sub)
    return found


def route_problems(route: APIRoute) -> set[type[RevflowError]]:
    """Every problem ``route`` can answer: declared ones, and those its parameters imply."""
    found = _declared(route.dependant)
    if route.body_field is not None:
        found |= {MalformedJSON, PayloadTooLarge, ValidationFailed}
    return found


def problem_responses(errors: set[type[RevflowError]]) -> dict[str, dict[str, Any]]:
    """``responses`` entries of an OpenAPI operation: one per status, naming every code."""
    by_status: dict[int, list[type[RevflowError]]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error)
    responses: dict[str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        codes = "; ".join(f"`{e.code}`: {e.title}" for e in sorted(group, key=lambda e: e.code))
        entry: dict[str, Any] = {
            "description": f"Problem ({codes})",
            "content": {PROBLEM_JSON: {"schema": {"$ref": _SCHEMA_REF}}},
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        responses[str(status)] = entry
    return responses


def openapi_document(
    app: FastAPI, components: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The application's OpenAPI document, with every operation's problems (replacing the
    framework's ``HTTPValidationError`` 422) and the given ``components`` schemas."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}"
    )
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for name, schema in (components or {}).items():
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"two different schemas are named {name}")
        schemas[name] = schema
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        answers = problem_responses(route_problems(route))
        operations = document["paths"][route.path_format]
        for method in route.methods or ():
            responses = operations[method.lower()]["responses"]
            responses.pop("422", None)
            responses.update(answers)
    app.openapi_schema = document
    return document
