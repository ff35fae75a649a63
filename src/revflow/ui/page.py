"""What every console handler shares: the signed-in caller, rendering, CSRF, errors as pages.

``PageRoute`` turns the project's errors into pages (or, for the console's JSON calls, into
problem documents) so that a handler raises exactly what the API's handlers raise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from revflow import problems
from revflow.auth.service import Principal
from revflow.db import Database, enter_account, mark_read_only
from revflow.engine.clock import Clock
from revflow.errors import (
    ConcurrentChange,
    DatabaseBusy,
    Forbidden,
    RevflowError,
    Unauthorized,
)
from revflow.kit import transactions
from revflow.logging import get_logger
from revflow.ui.session import COOKIE, Session, Signer, csrf_matches, principal_of

log = get_logger("revflow.ui")


class SignInRequired(Unauthorized):
    title = "Sign in to continue"


class CsrfRefused(Forbidden):
    code = "csrf_refused"
    title = "The form is out of date"


@dataclass
class Console:
    """The console's parts, built once per application (``app.state.console``)."""

    templates: Environment
    signer: Signer


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def render(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    console: Console = request.app.state.console
    html = console.templates.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status)


def _error_page(request: Request, error: RevflowError) -> Response:
    if wants_json(request):
        return problems.problem_response(error)
    if isinstance(error, SignInRequired) and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ui/sign-in?next={quote(target, safe='')}", 303)
    page: Page | None = getattr(request.state, "page", None)
    context = page.context() if page is not None else {"principal": None, "csrf": ""}
    return render(request, "error.html", {**context, "error": error}, error.status)


class PageRoute(APIRoute):
    """A console route: errors become a page (or a problem for a JSON call), never a trace."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RevflowError as error:
                return _error_page(request, error)
            except RequestValidationError as exc:
                return _error_page(request, problems.validation_problem(exc))
            except IntegrityError:
                return _error_page(
                    request, ConcurrentChange("Someone changed this at the same moment; retry")
                )
            except OperationalError:
                return _error_page(request, DatabaseBusy("The database is busy; retry"))
            except Exception as exc:
                log.error("ui_unhandled_error", path=request.url.path, exc_info=exc)
                return _error_page(request, RevflowError("Something went wrong; it was logged"))

        return route


@dataclass
class Page:
    """The signed-in caller of one console request and its database session."""

    request: Request
    db: AsyncSession
    principal: Principal
    session: Session
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def can_edit(self) -> bool:
        return self.principal.can("editor")

    @property
    def now(self) -> dt.datetime:
        clock: Clock = self.request.app.state.clock
        return clock.now()

    def context(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "csrf": self.session.csrf,
            "can_edit": self.can_edit,
            "path": self.request.url.path,
        }

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, template, {**self.context(), **context}, status)

    def require_editor(self) -> None:
        if not self.can_edit:
            raise Forbidden(f"This needs the editor role; your key has {self.principal.role}")


async def _db_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    write = request.method not in ("GET", "HEAD")
    async with db.session(write=write) as session:
        if not write:
            mark_read_only(session)  # a page that only reads cannot write by mistake
        yield session


DbSession = Annotated[AsyncSession, Depends(_db_session)]


async def _page(request: Request, db: DbSession) -> Page:
    console: Console = request.app.state.console
    session = console.signer.read_session(request.cookies.get(COOKIE))
    principal = await principal_of(db, session) if session else None
    if session is None or principal is None:
        raise SignInRequired("Your session ended; sign in again")
    await enter_account(db, principal.account_id)  # as the API's requests: deps.py
    page = Page(request, db, principal, session)
    request.state.page = page
    if request.method not in ("GET", "HEAD"):
        token = request.headers.get("x-csrf-token")
        if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get("csrf_token")
            token = value if isinstance(value, str) else None
        if not csrf_matches(session, token):
            raise CsrfRefused("The form's security token is missing or out of date; reload")
    return page


async def _editor_page(page: Annotated[Page, Depends(_page)]) -> Page:
    page.require_editor()
    return page


# Signed in (and, for a POST or PUT, a matching CSRF token).
ViewerPage = Annotated[Page, Depends(_page)]
# Signed in with the editor role: every console route that changes something.
EditorPage = Annotated[Page, Depends(_editor_page)]


async def commit(page: Page) -> None:
    """Commit the request's transaction (the services only flushed)."""
    await transactions.commit(page.db)


def form_errors(exc: ValidationError) -> dict[str, str]:
    """A form's validation errors by field name, to show under each input."""
    return {".".join(str(p) for p in e["loc"]) or "form": e["msg"] for e in exc.errors()}


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
