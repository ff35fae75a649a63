"""Assembles the console: its routers, static files and the session signer."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from revflow.config import Settings
from revflow.errors import NotFound
from revflow.kit.routing import shared_routes
from revflow.ui import (
    pages_audit,
    pages_editor,
    pages_migrations,
    pages_session,
    pages_versions,
    pages_workflows,
)
from revflow.ui.page import Console, PageRoute
from revflow.ui.session import Signer, secret_key
from revflow.ui.templating import environment

STATIC = Path(__file__).parent / "static"

fallback = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)


@fallback.get("/{rest:path}")
async def unknown_page(rest: str) -> None:
    """Any other path under /ui: a 404 page, like a missing object."""
    raise NotFound(f"There is no page at /ui/{rest}")


# In order: the catch-all 404 page comes last.
ROUTERS: tuple[APIRouter, ...] = (
    pages_session.router,
    pages_workflows.router,
    pages_versions.router,
    pages_editor.router,
    pages_migrations.router,
    pages_audit.router,
    fallback,
)


def install(app: FastAPI, settings: Settings) -> None:
    app.state.console = Console(templates=environment(), signer=Signer(secret_key(settings)))
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.router.routes.extend(shared_routes(*ROUTERS))
