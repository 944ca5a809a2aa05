"""The floor of each part of PostgreSQL ingest, CPU per row, batches of the variants interleaved.

Starts its own PostgreSQL (durable defaults, like benchmarks.pg_ingest),
decodes ~1.2 KB records with the server's decoder (timed: the part both
engines pay), then stores 1,000-record batches into one database per variant,
one batch of each variant in turn so that the machine's load falls on all
alike. Per variant it reports the CPU of every PostgreSQL process per row
(from /proc); for the whole store path also this process's (the store's
client side: row tuples, sort, psycopg's row format, the send). Variants:

- ``plain``: binary COPY into an unpartitioned table, no index;
- ``plain+unique``: the same with the unique index on (project_id, ts, id);
- ``plain+unique, empty record``: the same rows with an empty record blob;
- ``partitioned, no index``: COPY into the schema's partitioned ``logs``
  with its indexes dropped;
- ``record_ids claim``: the ids alone copied into the schema's ``record_ids``
  (pgids: each id once per project);
- ``store``: PostgresStore.ingest, the server's whole path.

    python -m benchmarks.pg_ingest_floor [--batches 40] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import psycopg

from banyan._record import IdSource
from banyan._wire import MSGPACK
from banyan.server import _ingest
from banyan.server.store import pgcopy, pgids, postgres
from banyan.server.store.postgres import PostgresStore
from benchmarks.server_ingest import make_batches, tree_cpu
from tests.pgserver import PgServer

_TABLE = f"CREATE TABLE t ({', '.join(f'{k} {v}' for k, v in postgres._LOG_TYPES.items())})"
_UNIQUE = "CREATE UNIQUE INDEX ON t (project_id, ts, id)"
VARIANTS: dict[str, list[str]] = {
    "plain": [_TABLE],
    "plain+unique": [_TABLE, _UNIQUE],
    "plain+unique, empty record": [_TABLE, _UNIQUE],
    "partitioned, no index": ["DROP INDEX logs_page_order", "DROP INDEX logs_experiment_subjects"],
    "record_ids claim": [],
}
_COPY = "COPY {} (" + ", ".join(postgres._LOG_TYPES) + ") FROM STDIN (FORMAT BINARY)"


async def _copy(conn: psycopg.AsyncConnection[Any], name: str, batch: _ingest.Decoded) -> None:
    rows = sorted(postgres._rows("bench", batch.values, batch.subjects), key=pgids._ID)
    if name == "record_ids claim":
        await pgcopy.copy_rows(conn, pgids._COPY, pgids._TYPES, [row[:3] for row in rows])
        await conn.commit()
        return
    if "empty" in name:
        rows = [(*row[:-2], b"", row[-1]) for row in rows]
    table = "t" if name.startswith("plain") else "logs"
    await pgcopy.copy_rows(conn, _COPY.format(table).encode(), postgres._LOGS.types, rows)
    await conn.commit()


async def _targets(server: PgServer) -> dict[str, Any]:
    """A connection per variant (its database set up), and a PostgresStore for ``store``."""
    targets: dict[str, Any] = {}
    for n, name in enumerate([*VARIANTS, "store"]):
        url = server.create_database(f"floor{n}")
        store = await PostgresStore.open(url, max_size=1)
        if name == "store":
            targets[name] = store
            continue
        await store.close()
        conn = await psycopg.AsyncConnection.connect(url)
        for statement in VARIANTS[name]:
            await conn.execute(statement.encode())
        await conn.commit()
        targets[name] = conn
    return targets


async def _measure(server: PgServer, batches: list[_ingest.Decoded]) -> dict[str, dict[str, float]]:
    assert server.proc is not None
    targets = await _targets(server)
    pg_cpu, own_cpu = dict.fromkeys(targets, 0.0), dict.fromkeys(targets, 0.0)
    pending = iter(batches)
    try:
        for _ in range(len(batches) // len(targets)):
            for name, target in targets.items():
                batch = next(pending)
                pg0, own0 = tree_cpu(server.proc.pid) or 0.0, time.process_time()
                if name == "store":
                    await target.ingest("bench", batch, 0)
                else:
                    await _copy(target, name, batch)
                own_cpu[name] += time.process_time() - own0
                pg_cpu[name] += (tree_cpu(server.proc.pid) or 0.0) - pg0
    finally:
        for target in targets.values():
            await target.close()
    rows = len(batches) // len(targets) * batches[0].count
    return {name: {"postgres_cpu_us_per_row": round(pg_cpu[name] / rows * 1e6, 2),
                   "this_process_cpu_us_per_row": round(own_cpu[name] / rows * 1e6, 2)}
            for name in targets}  # fmt: skip


def main() -> None:
    """Run the variants once and print their figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="per variant")
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()
    bodies = make_batches(args.batch, args.batches * (len(VARIANTS) + 1), IdSource())
    cpu0 = time.process_time()
    batches = [_ingest.decode(body, MSGPACK) for body in bodies]
    decode = (time.process_time() - cpu0) / (len(bodies) * args.batch) * 1e6
    server = PgServer(fast=False)
    try:
        server.start()
        result: dict[str, Any] = asyncio.run(_measure(server, batches))
    finally:
        server.remove()
    result["decode_cpu_us_per_row"] = round(decode, 2)
    result["record_bytes"] = round(sum(map(len, bodies)) / (len(bodies) * args.batch))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
