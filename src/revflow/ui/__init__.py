"""The web console (SPEC §10): server-rendered pages under ``/ui`` over the same services as
the API, signed in with an API key."""

from __future__ import annotations

from fastapi import FastAPI

from revflow.config import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the console's routes and static files on ``app``."""
    from revflow.ui.console import install as install_routes

    install_routes(app, settings)
