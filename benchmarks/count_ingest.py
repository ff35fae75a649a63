"""Count the instructions one contact upsert or one event costs, in process, with callgrind.

    python benchmarks/count_ingest.py [--operation upsert|event] [--database postgresql|sqlite]
    PYTHONPATH=<another checkout>/src python benchmarks/count_ingest.py   # another revision

The ingest counterpart of ``count_create.py`` (which says why instructions, not milliseconds,
compare two revisions on a shared machine), with ``bench_load.py``'s workload: a published
workflow that a ``purchased`` event starts, and ``--contacts`` contacts made by upsert. Each
counted upsert changes two fields of an existing contact (as most of the load stage's upserts
do); each counted event starts an execution of that workflow. Twenty operations warm up, then
``--operations`` more are counted with callgrind's instrumentation switched on. The count
includes the client's part of each request and none of the database's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from benchmarks import callgrind
from benchmarks.bench_load import purchase_definition
from benchmarks.common import fresh_database
from revflow.migrate import upgrade

WARM_UP = 20
API = "/api/v1"


async def _ingest(url: str, operation: str, contacts: int, operations: int) -> None:
    async with callgrind.client_of_one_account(url) as (client, headers):
        body = {"name": "purchases", "definition": purchase_definition(), "change_summary": "v1"}
        made = await client.post(f"{API}/workflows", headers=headers, json=body)
        made.raise_for_status()
        published = f"{API}/workflows/{made.json()['id']}/versions/1/publish"
        (await client.post(published, headers=headers)).raise_for_status()
        ids = []
        for n in range(contacts):
            answer = await client.put(
                f"{API}/contacts/by-external-id/load-{n}",
                headers=headers,
                json={"email": f"load{n}@example.com", "fields": {"tier": "gold"}},
            )
            answer.raise_for_status()
            ids.append(answer.json()["id"])
        for index in range(WARM_UP + operations):
            if index == WARM_UP:
                callgrind.instrument(True)
            n = index % contacts
            if operation == "upsert":
                response = await client.put(
                    f"{API}/contacts/by-external-id/load-{n}",
                    headers=headers,
                    json={"fields": {"score": index, "first_name": f"L{n}"}},
                )
            else:
                event = {"contact_id": ids[n], "name": "purchased", "data": {}}
                response = await client.post(f"{API}/events", headers=headers, json=event)
            if response.status_code not in (200, 202):
                raise RuntimeError(f"{operation} answered {response.status_code}: {response.text}")
        callgrind.instrument(False)


def _count(args: argparse.Namespace) -> None:
    per_operation = callgrind.count(__file__, args.keep) / args.operations
    print(
        f"{args.database}: {per_operation / 1e6:.3f} M instructions per {args.operation} "
        f"({args.operations} of them on {args.contacts} contacts, after {WARM_UP})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--operation", choices=["upsert", "event"], default="upsert")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--operations", type=int, default=100)
    parser.add_argument("--contacts", type=int, default=50)
    parser.add_argument("--keep", type=Path, default=None, help="copy callgrind's output file here")
    parser.add_argument("--uninstrumented", action="store_true", help="run once, no valgrind")
    args = parser.parse_args()
    if not callgrind.counting() and not args.uninstrumented:
        _count(args)
        return
    with (
        tempfile.TemporaryDirectory() as workdir,
        fresh_database(args.database, Path(workdir)) as url,
    ):
        upgrade(url)
        asyncio.run(_ingest(url, args.operation, args.contacts, args.operations))


if __name__ == "__main__":
    main()
