"""Rows/s and CPU per row of PostgresStore.ingest: new rows by COPY, a resent batch staged.

Starts its own PostgreSQL (initdb in a temporary directory, default durability
settings: fsync and synchronous_commit on), decodes 100,000 ~1.2 KB records in
4,000-record batches with the server's own decoder (not timed), then stores
them through one PostgresStore connection. Reports rows/s and the CPU time per
row of this process (the store's share: row building, COPY, the driver) and of
every PostgreSQL process (from /proc), and resends the first batch to show it
stores nothing twice (that resend takes the staging path: COPY into a
temporary table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING).

    python -m benchmarks.pg_ingest [--rows 100000] [--batch 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from banyan._record import IdSource
from banyan._wire import MSGPACK
from banyan.server import _ingest
from banyan.server.store.postgres import PostgresStore
from benchmarks.server_ingest import make_batches, tree_cpu
from tests.pgserver import PgServer


async def _ingest_all(url: str, batches: list[_ingest.Decoded], pg_pid: int) -> dict[str, Any]:
    store = await PostgresStore.open(url, max_size=1)
    try:
        cpu0, pg0, wall0 = time.process_time(), tree_cpu(pg_pid), time.perf_counter()
        stored = 0
        for batch in batches:
            stored += await store.ingest("bench", batch, 0)
        wall, cpu, pg = time.perf_counter() - wall0, time.process_time() - cpu0, tree_cpu(pg_pid)
        resent = await store.ingest("bench", batches[0], 0)
        summary = await store.summary("bench")
    finally:
        await store.close()
    rows = sum(b.count for b in batches)
    pg_cpu = None if pg is None or pg0 is None else pg - pg0
    return {
        "rows": rows,
        "stored": stored,
        "resent_stored": resent,
        "summary": summary,
        "seconds": round(wall, 3),
        "rows_per_s": round(rows / wall),
        "client_cpu_us_per_row": round(cpu / rows * 1e6, 2),
        "postgres_cpu_us_per_row": None if pg_cpu is None else round(pg_cpu / rows * 1e6, 2),
    }


def main() -> None:
    """Run the benchmark once and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=4_000)
    args = parser.parse_args()
    bodies = make_batches(args.batch, args.rows // args.batch, IdSource())
    batches = [_ingest.decode(body, MSGPACK) for body in bodies]
    server = PgServer(fast=False)
    try:
        server.start()
        assert server.proc is not None
        url = server.create_database("bench")
        result = asyncio.run(_ingest_all(url, batches, server.proc.pid))
    finally:
        server.remove()
    result["record_bytes"] = round(sum(map(len, bodies)) / result["rows"])
    result["batch"] = args.batch
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
