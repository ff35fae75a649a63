"""The floor of the API benchmarks: the least any implementation of an operation must pay.

Run by the benchmarks themselves (not part of revflow): ``python benchmarks/floor_app.py --dsn
DSN --port PORT``. A bare ASGI application behind the same ``uvicorn.run`` settings as
``revflow serve`` (one process, warnings only, no access log, the collector frozen after
start-up), on the same PostgreSQL database as the measured server, reached by the same HTTP
client. Each route does only the irreducible database work of one revflow operation:

- ``POST /versions``: one ``INSERT`` of the request's JSON bytes (``jsonb``) and a commit;
- ``PUT /drafts/{id}``: one ``UPDATE … RETURNING`` of the request's JSON bytes (the row is
  made beforehand, untimed, by ``POST /drafts/{id}``);
- ``GET /versions?account=A&workflow=W&before=N``: one indexed ``SELECT`` of 50 rows of
  revflow's own ``versions`` table (the columns of a listed version, no definition);
- ``GET /compare?account=A&workflow=W&from=1&to=2``: two ``SELECT``s of the two stored
  definitions in revflow's ``versions`` table, as text (no decoding).

Answers are JSON built from what the database returned. The tables ``bench_floor_versions``
and ``bench_floor_drafts`` are created at start-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import uvicorn

LIST_LIMIT = 50

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_floor_versions (
    id bigserial PRIMARY KEY,
    definition jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bench_floor_drafts (
    id integer PRIMARY KEY,
    definition jsonb,
    revision integer NOT NULL DEFAULT 0,
    saved_at timestamptz NOT NULL DEFAULT now()
);
"""

INSERT_VERSION = "INSERT INTO bench_floor_versions (definition) VALUES ($1::jsonb) RETURNING id"
UPDATE_DRAFT = (
    "UPDATE bench_floor_drafts SET definition = $2::jsonb, revision = revision + 1, "
    "saved_at = now() WHERE id = $1 RETURNING revision"
)
ENSURE_DRAFT = "INSERT INTO bench_floor_drafts (id) VALUES ($1) ON CONFLICT (id) DO NOTHING"
# The listed columns of revflow's versions, newest first, by the (account, workflow, number)
# unique index.
LIST_VERSIONS = (
    "SELECT number, status, semver, change_summary, created_by, created_at, published_at, "
    "parent, step_count FROM versions WHERE account_id = $1 AND workflow_id = $2 "
    "AND number < $3 ORDER BY number DESC LIMIT $4"
)
GET_DEFINITION = (
    "SELECT definition::text FROM versions WHERE account_id = $1 AND workflow_id = $2 "
    "AND number = $3"
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _default(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


class FloorApp:
    """The bare ASGI application; its pool is opened by the lifespan."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, answer = await self._route(scope, bytes(body))
        payload = json.dumps(answer, default=_default, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)
                async with self.pool.acquire() as conn:
                    await conn.execute(SCHEMA)
                gc.collect()
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        assert self.pool is not None
        method, path = scope["method"], scope["path"]
        if path == "/readyz":
            return 200, {"status": "ready"}
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        async with self.pool.acquire() as conn:
            if method == "POST" and path == "/versions":
                number = await conn.fetchval(INSERT_VERSION, body.decode())
                return 201, {"id": number}
            if method == "PUT" and path.startswith("/drafts/"):
                draft = int(path.rsplit("/", 1)[1])
                revision = await conn.fetchval(UPDATE_DRAFT, draft, body.decode())
                return 200, {"revision": revision}
            if method == "POST" and path.startswith("/drafts/"):
                await conn.execute(ENSURE_DRAFT, int(path.rsplit("/", 1)[1]))
                return 201, {}
            if method == "GET" and path == "/versions":
                rows = await conn.fetch(
                    LIST_VERSIONS,
                    uuid.UUID(query["account"]),
                    uuid.UUID(query["workflow"]),
                    int(query.get("before", 2**31 - 1)),
                    LIST_LIMIT,
                )
                return 200, {"items": [dict(row) for row in rows]}
            if method == "GET" and path == "/compare":
                account, workflow = uuid.UUID(query["account"]), uuid.UUID(query["workflow"])
                before = await conn.fetchval(GET_DEFINITION, account, workflow, int(query["from"]))
                after = await conn.fetchval(GET_DEFINITION, account, workflow, int(query["to"]))
                return 200, {"bytes": [len(before or ""), len(after or "")]}
        return 404, {"error": f"no route {method} {path}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", required=True, help="libpq connection string of the database")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same uvicorn settings as ``revflow serve``.
    uvicorn.run(
        FloorApp(args.dsn),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
