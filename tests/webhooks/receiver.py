"""A webhook receiver on loopback that verifies every request with ``standardwebhooks``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Delivered:
    """One request as the receiver saw it, and whether its signature verified."""

    headers: dict[str, str]
    body: bytes
    verified_with: list[str]

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A keep-alive HTTP/1.1 server; ``answer(n, request)`` decides the n-th answer (1-based).
    Every request is checked with ``Webhook(secret).verify(body, headers)`` against each of
    ``secrets`` (set by the test once the subscription exists)."""

    def __init__(self, answer: Callable[[int, Delivered], Answer] | None = None) -> None:
        self.answer = answer or (lambda n, r: Answer())
        self.secrets: list[str] = []
        self.requests: list[Delivered] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    def verified(self) -> list[Delivered]:
        return [r for r in self.requests if r.verified_with]

    def _verify(self, body: bytes, headers: dict[str, str]) -> list[str]:
        good = []
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except Exception:
                continue
            good.append(secret)
        return good

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    return
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                request = Delivered(headers, body, self._verify(body, headers))
                self.requests.append(request)
                answer = self.answer(len(self.requests), request)
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                extra = "".join(f"{k}: {v}\r\n" for k, v in answer.headers.items())
                writer.write(
                    (
                        f"HTTP/1.1 {answer.status} Status\r\n{extra}Content-Length: 2\r\n\r\nok"
                    ).encode()
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
