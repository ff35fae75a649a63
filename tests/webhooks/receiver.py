"""A webhook receiver on loopback that verifies every request with ``standardwebhooks``."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Answer:
    """How to answer: ``drop`` closes the connection instead of answering, ``close`` closes it
    after answering (without saying so in a header)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b"ok"
    drop: bool = False
    close: bool = False


@dataclass
class Delivered:
    """One request as the receiver saw it, and whether its signature verified."""

    headers: dict[str, str]
    body: bytes
    verified_with: list[str]
    target: str = ""

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A keep-alive HTTP/1.1 server; ``answer(n, request)`` decides the n-th answer (1-based).
    Every request is checked with ``Webhook(secret).verify(body, headers)`` against each of
    ``secrets`` (set by the test once the subscription exists). With ``tls`` it serves HTTPS."""

    def __init__(
        self,
        answer: Callable[[int, Delivered], Answer] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answer = answer or (lambda n, r: Answer())
        self.secrets: list[str] = []
        self.requests: list[Delivered] = []
        self.connections = 0
        self.tls = tls
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
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
        self.connections += 1
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
                target = line.decode("latin-1").split(" ")[1] if b" " in line else ""
                request = Delivered(headers, body, self._verify(body, headers), target)
                self.requests.append(request)
                answer = self.answer(len(self.requests), request)
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                if answer.drop:
                    return
                extra = "".join(f"{k}: {v}\r\n" for k, v in answer.headers.items())
                head = f"HTTP/1.1 {answer.status} Status\r\n{extra}"
                if answer.status == 204:  # an answer that has no body
                    writer.write(f"{head}\r\n".encode())
                else:
                    writer.write(f"{head}Content-Length: {len(answer.body)}\r\n\r\n".encode())
                    writer.write(answer.body)
                await writer.drain()
                if answer.close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
