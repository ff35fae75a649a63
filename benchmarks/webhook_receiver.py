"""The loopback receiver of ``bench_webhooks.py``: an HTTP/1.1 server in a process of its own.

Run: ``python benchmarks/webhook_receiver.py --port P [--delay S] [--verify-every K]``, with
``BENCH_WEBHOOK_SECRETS`` in the environment: a JSON object from a request path (one per
subscription, e.g. ``/hooks/0``) to that subscription's secret.

- Every ``POST`` is answered ``204 No Content`` on its keep-alive connection, after ``--delay``
  seconds (0: at once; the slow receiver of the engine comparison uses 2). Requests are parsed by
  hand on an ``asyncio.Protocol`` (uvloop's loop when installed), so the receiver costs little
  CPU beside the workers it measures.
- It counts every ``webhook-id`` it receives, and checks the first request of every path and
  then one in ``--verify-every`` with the reference library's ``Webhook(secret).verify(body,
  headers)``: what the benchmark counts are correctly signed deliveries.
- ``GET /_report`` answers what it saw, as JSON: ``requests``, ``connections`` (this one's
  included), ``ids`` (webhook-id → times received), ``verified``, ``verify_failed`` (with the
  first few errors) and ``paths``.
- It prints ``receiver_ready`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections import Counter
from typing import Any, cast

from standardwebhooks import Webhook

READY_MARKER = "receiver_ready"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


class Tally:
    """What the receiver saw, across its connections."""

    def __init__(self, secrets: dict[str, str], verify_every: int) -> None:
        self.hooks = {path: Webhook(secret) for path, secret in secrets.items()}
        self.verify_every = verify_every
        self.requests = 0
        self.connections = 0
        self.ids: Counter[str] = Counter()
        self.paths: Counter[str] = Counter()
        self.verified = 0
        self.verify_failed = 0
        self.errors: list[str] = []

    def request(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.requests += 1
        self.ids[headers.get("webhook-id", "")] += 1
        self.paths[path] += 1
        if self.paths[path] == 1 or self.requests % self.verify_every == 0:
            self._verify(path, headers, body)

    def _verify(self, path: str, headers: dict[str, str], body: bytes) -> None:
        hook = self.hooks.get(path)
        try:
            if hook is None:
                raise ValueError(f"no secret for {path}")
            hook.verify(body, headers)
        except Exception as exc:
            self.verify_failed += 1
            if len(self.errors) < 5:
                self.errors.append(f"{path}: {type(exc).__name__}: {exc}")
        else:
            self.verified += 1

    def report(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "connections": self.connections,
            "ids": dict(self.ids),
            "paths": dict(self.paths),
            "verified": self.verified,
            "verify_failed": self.verify_failed,
            "errors": self.errors,
        }


class Connection(asyncio.Protocol):
    """One keep-alive connection: requests in, answers out in order."""

    def __init__(self, tally: Tally, delay: float) -> None:
        self.tally = tally
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, but they write the same.
        self.transport = cast(asyncio.WriteTransport, transport)
        self.tally.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path = [*lines[0].split(" "), "", ""][:2]
            if method == "GET" and path == "/_report":
                self._write(self._json(self.tally.report()))
                continue
            self.tally.request(path, headers, body)
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self._write, NO_CONTENT)
            else:
                self._write(NO_CONTENT)

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)

    @staticmethod
    def _json(document: dict[str, Any]) -> bytes:
        body = json.dumps(document).encode()
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


async def serve(port: int, delay: float, verify_every: int) -> None:
    secrets = json.loads(os.environ.get("BENCH_WEBHOOK_SECRETS", "{}"))
    tally = Tally(secrets, verify_every)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(tally, delay), "127.0.0.1", port, backlog=1024
    )
    print(READY_MARKER, flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--verify-every", type=int, default=10)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, args.delay, args.verify_every))
    else:
        uvloop.run(serve(args.port, args.delay, args.verify_every))


if __name__ == "__main__":
    main()
