"""Routes built once per process and shared by every application made in it."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.routing import BaseRoute

# Routers compare by value and are not hashable: the built routes are kept by the routers'
# identities (module-level routers, which live as long as the process).
_BUILT: dict[tuple[int, ...], list[BaseRoute]] = {}


def shared_routes(*routers: APIRouter) -> list[BaseRoute]:
    """The routes of ``routers``, in order, built once per process for every application
    that asks for the same routers. ``include_router`` builds each route again for every
    application (its dependencies' signatures and its response model's validator: a third of
    a second for the whole API and console), and nothing in a route belongs to one
    application: each request finds its database, settings and caches in
    ``request.app.state``. So ``app.dependency_overrides`` does not reach these routes;
    revflow does not use it. Add them with ``app.router.routes.extend(...)``."""
    key = tuple(id(router) for router in routers)
    built = _BUILT.get(key)
    if built is None:
        combined = APIRouter()
        for router in routers:
            combined.include_router(router)
        built = _BUILT[key] = combined.routes
    return built
