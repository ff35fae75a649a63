"""How the client's methods are written once and run both ways (sync and async).

Each method of the API is written once, as a *plan*: a generator that yields the HTTP
:class:`Call`\\ s it needs and receives each :class:`Reply` (or, thrown into it, the typed error
of an error answer), then returns its result. :class:`Endpoint` turns such a generator into a
method that ``Client`` runs with ``httpx.Client`` and ``AsyncClient`` runs with
``httpx.AsyncClient``: one definition of every route, two thin drivers.

A method that calls one route names it once, in :func:`endpoint`, and its plan yields a
:class:`Request` — the path values, query, body and headers — which the endpoint makes the
:class:`Call` of its route.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload
from urllib.parse import quote

import httpx

from revflow.client.errors import RevflowError, Unreachable, error_for

if TYPE_CHECKING:
    from revflow.client.api import AsyncClient, Client

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One HTTP request of a plan; ``template`` is the route as ``/openapi.json`` names it."""

    method: str
    template: str
    path: Mapping[str, str | int] = field(default_factory=dict)
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None

    @property
    def url(self) -> str:
        values = {name: quote(str(value), safe="") for name, value in self.path.items()}
        return self.template.format(**values)

    def query(self) -> dict[str, Any] | None:
        """The query without the parameters left out (None)."""
        if self.params is None:
            return None
        return {k: v for k, v in self.params.items() if v is not None}

    def header_values(self) -> dict[str, str] | None:
        if self.headers is None:
            return None
        return {k: v for k, v in self.headers.items() if v}


@dataclass(frozen=True)
class Request:
    """What an endpoint's plan sends to its own route: the :class:`Call` without the route."""

    path: Mapping[str, str | int] = field(default_factory=dict)
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None

    def to(self, route: tuple[str, str]) -> Call:
        method, template = route
        return Call(method, template, self.path, self.params, self.json, self.headers)


@dataclass(frozen=True)
class Reply:
    """A successful answer: its status, headers and body (decoded JSON, text, or None)."""

    status: int
    headers: httpx.Headers
    body: Any


Calls = Generator[Call, Reply, T]
"""A plan as it runs: every request with its route."""
Plan = Generator[Call | Request, Reply, T]
"""A plan as it is written: an endpoint's plan yields :class:`Request`\\ s of its own route."""


def routed(plan: Plan[T], route: tuple[str, str] | None) -> Calls[T]:
    """``plan`` with each :class:`Request` made the :class:`Call` of ``route``."""
    try:
        step = next(plan)
        while True:
            if isinstance(step, Request):
                if route is None:
                    raise TypeError("a plan of several calls yields Calls, not Requests")
                step = step.to(route)
            try:
                reply = yield step
            except RevflowError as error:
                step = plan.throw(error)
            else:
                step = plan.send(reply)
    except StopIteration as stop:
        return cast(T, stop.value)


class Endpoint(Generic[P, T]):
    """A method of the client written once as a plan; see the module's docstring.

    ``route`` is ``(method, path template)`` of the API route it calls, or None for a method
    that combines several calls.
    """

    def __init__(
        self, plan: Callable[Concatenate[Any, P], Plan[T]], route: tuple[str, str] | None
    ) -> None:
        self.route = route
        functools.update_wrapper(self, plan)  # type: ignore[arg-type]

        @functools.wraps(plan)
        def calls(owner: Any, /, *args: P.args, **kwargs: P.kwargs) -> Calls[T]:
            return routed(plan(owner, *args, **kwargs), route)

        self.plan: Callable[Concatenate[Any, P], Calls[T]] = calls

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Endpoint[P, T]: ...
    @overload
    def __get__(self, obj: Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        plan = self.plan

        @functools.wraps(plan)
        def bound(*args: Any, **kwargs: Any) -> Any:
            return obj._run(plan(obj, *args, **kwargs))

        return bound


def endpoint(
    method: str, template: str
) -> Callable[[Callable[Concatenate[Any, P], Plan[T]]], Endpoint[P, T]]:
    """Declare a client method that calls the route ``method template``."""

    def declare(plan: Callable[Concatenate[Any, P], Plan[T]]) -> Endpoint[P, T]:
        return Endpoint(plan, (method, template))

    return declare


def flow(plan: Callable[Concatenate[Any, P], Plan[T]]) -> Endpoint[P, T]:
    """Declare a client method made of several calls."""
    return Endpoint(plan, None)


def decode(response: httpx.Response) -> Reply:
    """The reply of a successful answer; the typed :class:`RevflowError` of an error answer."""
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            problem = {"detail": response.text[:500] or response.reason_phrase}
        raise error_for(response.status_code, problem, response.headers.get("Retry-After"))
    body: Any = None
    if response.status_code != 204 and response.content:
        if "json" in response.headers.get("content-type", ""):
            body = response.json()
        else:
            body = response.text
    return Reply(response.status_code, response.headers, body)


def unreachable(base_url: str, error: httpx.TransportError) -> Unreachable:
    reason = str(error) or type(error).__name__
    return Unreachable(0, "unreachable", "The server cannot be reached", f"{base_url}: {reason}")


def run_sync(http: httpx.Client, plan: Calls[T]) -> T:
    """Run a plan with a blocking client."""
    try:
        call = next(plan)
        while True:
            try:
                response = http.request(
                    call.method,
                    call.url,
                    params=call.query(),
                    json=call.json,
                    headers=call.header_values(),
                )
                reply = decode(response)
            except httpx.TransportError as error:
                call = plan.throw(unreachable(str(http.base_url), error))
            except RevflowError as error:
                call = plan.throw(error)
            else:
                call = plan.send(reply)
    except StopIteration as stop:
        return cast(T, stop.value)


async def run_async(http: httpx.AsyncClient, plan: Calls[T]) -> T:
    """Run a plan with an asynchronous client."""
    try:
        call = next(plan)
        while True:
            try:
                response = await http.request(
                    call.method,
                    call.url,
                    params=call.query(),
                    json=call.json,
                    headers=call.header_values(),
                )
                reply = decode(response)
            except httpx.TransportError as error:
                call = plan.throw(unreachable(str(http.base_url), error))
            except RevflowError as error:
                call = plan.throw(error)
            else:
                call = plan.send(reply)
    except StopIteration as stop:
        return cast(T, stop.value)
