"""Sign-in with an API key, and sign-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from revflow.auth.service import authenticate
from revflow.ui.page import Console, DbSession, PageRoute, ViewerPage, render, see_other
from revflow.ui.session import COOKIE, SESSION_SECONDS, SIGN_IN_COOKIE, SIGN_IN_SECONDS

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a console path: never another site (``//host``) after signing in."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/workflows"


def _sign_in_form(request: Request, target: str, error: str | None, status: int) -> HTMLResponse:
    console: Console = request.app.state.console
    cookie, token = console.signer.new_sign_in()
    response = render(
        request,
        "sign_in.html",
        {"principal": None, "csrf": "", "sign_in_token": token, "next": target, "error": error},
        status,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        cookie,
        max_age=SIGN_IN_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("")
async def console_home() -> RedirectResponse:
    return see_other("/ui/workflows")


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str | None = None) -> HTMLResponse:
    return _sign_in_form(request, _safe_next(next), None, 200)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    db: DbSession,
    api_key: Annotated[str, Form()] = "",
    sign_in_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    console: Console = request.app.state.console
    target = _safe_next(next)
    if not console.signer.check_sign_in(request.cookies.get(SIGN_IN_COOKIE), sign_in_token):
        return _sign_in_form(request, target, "The sign-in form expired; try again.", 403)
    principal = await authenticate(db, api_key.strip()) if api_key.strip() else None
    if principal is None:
        return _sign_in_form(request, target, "That API key is unknown or revoked.", 401)
    _session, cookie = console.signer.new_session(principal.key_id)
    response = see_other(target)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/ui")
    return response


@router.post("/sign-out")
async def sign_out(page: ViewerPage) -> Response:
    """ViewerPage checked the CSRF token: another site cannot sign anyone out."""
    del page
    response = see_other("/ui/sign-in")
    response.delete_cookie(COOKIE, path="/ui")
    return response
