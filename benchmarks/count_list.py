"""Count the instructions one list of versions costs, in process, with valgrind's callgrind.

    python benchmarks/count_list.py [--database postgresql|sqlite] [--lists 100]
    PYTHONPATH=<another checkout>/src python benchmarks/count_list.py   # another revision

The list's counterpart of ``count_create.py`` (which says why instructions, not
milliseconds, compare two revisions on a shared machine). The application runs in this process
(httpx's ASGI transport: no server, no socket) on a fresh database with one account and a
workflow of ``--versions`` small versions. Twenty lists of the newest 50 warm up, then
``--lists`` more are counted with callgrind's instrumentation switched on, each answer checked
to be the first one byte for byte. The count includes the client's part of each request and
none of the database's. Needs Debian's ``valgrind`` (its ``callgrind_control`` included).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from benchmarks import callgrind
from benchmarks.common import fresh_database
from revflow.migrate import upgrade

WARM_UP = 20
LIMIT = 50


async def _list_versions(url: str, versions: int, lists: int) -> None:
    settings = {"max_versions": versions + 10}
    async with callgrind.client_of_one_account(url, **settings) as (client, headers):
        _workflow, path = await callgrind.workflow_of_small_versions(client, headers, versions)
        expected: bytes | None = None
        for index in range(WARM_UP + lists):
            if index == WARM_UP:
                callgrind.instrument(True)
            response = await client.get(path, headers=headers, params={"limit": LIMIT})
            if response.status_code != 200:
                raise RuntimeError(f"list answered {response.status_code}: {response.text}")
            if expected is None:
                expected = response.content
            elif response.content != expected:
                raise RuntimeError("a list answered other bytes than the first")
        callgrind.instrument(False)


def _count(args: argparse.Namespace) -> None:
    per_list = callgrind.count(__file__, args.keep) / args.lists
    print(
        f"{args.database}: {per_list / 1e6:.3f} M instructions per list "
        f"({args.lists} lists of {LIMIT} of {args.versions} versions, after {WARM_UP})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--lists", type=int, default=100)
    parser.add_argument("--versions", type=int, default=60)
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
        asyncio.run(_list_versions(url, args.versions, args.lists))


if __name__ == "__main__":
    main()
