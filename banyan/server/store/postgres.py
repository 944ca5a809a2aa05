"""The PostgreSQL engine: a bounded async pool, COPY for batches, exact sharded counters.

A batch's ids are claimed (pgids) and its rows copied (binary COPY) straight
into their tables, all of it new: the common case, and the cheapest (no second
write of each row). Should a record be stored already (a resent batch, or
another instance storing the same batch at once), a unique index refuses a
COPY; the transaction is rolled back, the ids claimed again with ``INSERT ...
ON CONFLICT DO NOTHING``, and the rows copied into a temporary staging table,
created then, and moved with one ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING``: each record is stored once, and the row counts say how many were new. The
counters move in the same transaction, in one of ``COUNTER_SHARDS`` rows per
project chosen by the backend, so concurrent batches do not queue on one row;
reads sum the shards.

Every driver or pool failure to reach the database becomes StoreUnavailable;
the pool replaces broken connections by itself.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.string import BytesBinaryDumper
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from banyan._wire import Rejected
from banyan.server._ingest import Decoded
from banyan.server._rules import COLUMN_NAMES, COLUMNS, NULL, SCORE_COLUMN_NAMES, SCORE_COLUMNS
from banyan.server.store import (
    Conflict,
    StoreUnavailable,
    pgcopy,
    pgids,
    pgschema,
    pool_size,
    redact,
)
from banyan.server.store.pgcatalog import Catalog
from banyan.server.store.pgexperiments import Experiments
from banyan.server.store.pgidempotency import Idempotency
from banyan.server.store.pgpages import LogPages
from banyan.server.store.pgresults import Results
from banyan.server.store.pgseries import Series

log = logging.getLogger("banyan.server")

#: Counter rows per project; a batch adds to the one of its backend (pid % shards).
COUNTER_SHARDS = 16
#: The PostgreSQL type of each copied column; the orders are _rules' (one source).
_TYPES = {
    "project_id": "text", "id": "text", "ts": "float8", "prompt_name": "text", "version": "text",
    "branch_name": "text", "model": "text", "duration_ms": "float8", "experiment_id": "text",
    "experiment_version_id": "text", "input_tokens": "int8", "output_tokens": "int8",
    "cost": "float8", "record": "bytea", "subject": "text", "name": "text", "kind": "text",
    "value": "float8", "category": "text", "record_id": "text",
}  # fmt: skip
#: A copied logs row: the project, a batch's columns (the record last), then the subject.
_LOG_TYPES = {name: _TYPES[name] for name in ("project_id", *COLUMN_NAMES, "record", "subject")}
_SCORE_TYPES = {name: _TYPES[name] for name in ("project_id", *SCORE_COLUMN_NAMES, "record")}


def _stage(table: str, types: dict[str, str]) -> str:
    columns = ", ".join(f"{name} {kind}" for name, kind in types.items())
    return f"CREATE TEMP TABLE IF NOT EXISTS {table}_stage ({columns}) ON COMMIT DELETE ROWS"


# No ORDER BY: sorting ~1 KB rows spills past work_mem (+5 us a row); the rows
# are copied in id order instead (logs: pgids.claim's order; scores: sorted), so
# that two batches sharing ids take their row locks in one order. A deadlock,
# should the scan order differ, is an OperationalError: StoreUnavailable, and
# the client resends.
def _move(table: str, types: dict[str, str], key: str) -> str:
    names = ", ".join(types)
    return (f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}_stage"
            f" ON CONFLICT ({key}) DO NOTHING")  # fmt: skip


@dataclass(frozen=True)
class _Table:
    """How a batch's rows of one table are copied in: straight, or staged then moved."""

    copy: bytes
    types: list[str]
    stage: bytes
    copy_stage: bytes
    move: bytes
    clear: bytes


def _table(table: str, types: dict[str, str], key: str) -> _Table:
    copy = f"COPY {{}} ({', '.join(types)}) FROM STDIN (FORMAT BINARY)"
    return _Table(
        copy.format(table).encode(), [*types.values()], _stage(table, types).encode(),
        copy.format(f"{table}_stage").encode(), _move(table, types, key).encode(),
        f"DELETE FROM {table}_stage".encode(),
    )  # fmt: skip


_LOGS = _table("logs", _LOG_TYPES, "project_id, id, ts")
_SCORES = _table("scores", _SCORE_TYPES, "project_id, id")
_COUNT = f"""
INSERT INTO ingest_counters AS c
VALUES (%s, pg_backend_pid() %% {COUNTER_SHARDS}, %s, %s, %s, %s, %s)
ON CONFLICT (project_id, shard) DO UPDATE SET
    stored = c.stored + excluded.stored, duplicates = c.duplicates + excluded.duplicates,
    rejected = c.rejected + excluded.rejected, batches = c.batches + excluded.batches,
    single = c.single + excluded.single
"""
_SUMMARY = """
SELECT COALESCE(SUM(stored), 0), COALESCE(SUM(duplicates), 0), COALESCE(SUM(rejected), 0),
       COALESCE(SUM(batches), 0), COALESCE(SUM(single), 0)
FROM ingest_counters WHERE project_id = %s
"""
_KEY = operator.itemgetter(1, 2)
_UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
#: Text PostgreSQL refuses (a NUL character), text the driver cannot encode (a lone
#: surrogate) or a value out of range: the row, not the batch.
_ROW_ERRORS = (psycopg.DataError, UnicodeEncodeError)


def _none(column: list[Any]) -> list[Any]:
    """The column with Decoded's NULL (NaN; non-finite floats are rejected) as None."""
    nulls = column.count(NULL)  # by identity first: a C scan, most columns have none
    if not nulls:
        return column
    if nulls == len(column):
        return [None] * nulls
    return [None if v is NULL else v for v in column]


def _rows(project_id: str, values: list[Any], subjects: list[Any]) -> list[tuple[Any, ...]]:
    """Decoded.values and subjects as row tuples in batch order; NaN becomes None."""
    columns = [values[c::COLUMNS] for c in range(COLUMNS)]
    columns[2 : COLUMNS - 1] = map(_none, columns[2 : COLUMNS - 1])
    projects = itertools.repeat(project_id, len(columns[0]))
    return list(zip(projects, *columns, _none(subjects), strict=True))


def _score_rows(project_id: str, values: list[Any]) -> list[tuple[Any, ...]]:
    """Decoded.scores as row tuples in batch order; NaN becomes None."""
    columns = [values[c::SCORE_COLUMNS] for c in range(SCORE_COLUMNS)]
    columns[3 : SCORE_COLUMNS - 1] = map(_none, columns[3 : SCORE_COLUMNS - 1])
    return list(zip(itertools.repeat(project_id, len(columns[0])), *columns, strict=True))


async def _direct(conn: AsyncConnection[Any], rows: list[Any], table: _Table) -> int:
    """COPY rows straight into their table; UniqueViolation if one is stored already."""
    if rows:
        await pgcopy.copy_rows(conn, table.copy, table.types, rows)
    return len(rows)


async def _staged(conn: AsyncConnection[Any], rows: list[Any], table: _Table) -> int:
    """COPY rows into a staging table and move the new ones; returns how many were new."""
    if not rows:
        return 0
    await conn.execute(table.stage)
    await pgcopy.copy_rows(conn, table.copy_stage, table.types, rows)
    cur = await conn.execute(table.move)
    return cur.rowcount


async def _configure(conn: AsyncConnection[Any]) -> None:
    # COPY picks a dumper by type oid: bytea's is dbapi20's Binary dumper, in Python.
    conn.adapters.register_dumper(bytes, BytesBinaryDumper)


class PostgresStore(Catalog, Experiments, Idempotency, LogPages, Results, Series):
    """A Store on PostgreSQL; make one with ``await PostgresStore.open(url)``."""

    def __init__(self, url: str, *, max_size: int | None = None, timeout: float = 5.0) -> None:
        """``max_size`` connections at most (default: ``store.pool_size()``)."""
        self._url = url
        max_size = pool_size() if max_size is None else max_size
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            url, min_size=1, max_size=max_size, timeout=timeout, open=False,
            configure=_configure, name="banyan", reconnect_timeout=365 * 86_400,
        )  # fmt: skip
        self._days: set[int] = set()
        #: Most milliseconds that partition changes wait for a table lock.
        self.prune_lock_timeout_ms = self.partition_lock_timeout_ms = 2000

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self._url)!r})"

    @classmethod
    async def open(cls, url: str, **options: Any) -> PostgresStore:
        """Connect, create or upgrade the schema, and create the partitions ahead."""
        store = cls(url, **options)
        try:
            await store._pool.open(wait=True, timeout=store._pool.timeout)
        except _UNREACHABLE as exc:
            await store._pool.close()
            raise store._unavailable(exc) from None
        try:
            async with store._connection() as conn:
                await pgschema.migrate(conn)
            await store._ensure_days(pgschema.wanted_days((), time.time()))
        except BaseException:
            await store._pool.close()
            raise
        return store

    async def close(self) -> None:
        """Wait for connections in use, then close them all."""
        await self._pool.close()

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        return StoreUnavailable(f"PostgreSQL at {redact(self._url)} unavailable: "
                                f"{type(exc).__name__}: {detail}")  # fmt: skip

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection in a transaction, committed unless the block raises."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except _UNREACHABLE as exc:
            raise self._unavailable(exc) from None
        except psycopg.errors.UniqueViolation as exc:
            # A race two instances ran at once: the checks before the insert both passed.
            raise Conflict(f"already exists ({exc.diag.constraint_name})") from None

    async def _fetch(self, query: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            cur = await conn.execute(query.encode(), args)
            return await cur.fetchall()

    async def _ensure_days(self, days: set[int]) -> None:
        if days <= self._days:
            return
        async with self._connection() as conn:
            self._days = await pgschema.existing_days(conn)
            for day in sorted(days - self._days):
                try:
                    await pgschema.create_partition(conn, day, self.partition_lock_timeout_ms)
                except psycopg.errors.LockNotAvailable:
                    # Its rows go to logs_default meanwhile; the next batch tries again.
                    log.warning("partition %s not created yet: a table lock is held",
                                pgschema.partition_name(day))  # fmt: skip
                    continue
                self._days.add(day)

    async def ingest(self, project_id: str, batch: Decoded, single: int) -> int:
        """Store a decoded batch once per record; returns the rows that were new."""
        await self._ensure_days(pgschema.wanted_days(batch.values[1::COLUMNS], time.time()))
        try:
            async with self._connection() as conn:
                try:
                    async with conn.transaction():
                        inserted = await self._stored(conn, project_id, batch, single, fresh=True)
                except psycopg.errors.UniqueViolation:
                    async with conn.transaction():
                        inserted = await self._stored(conn, project_id, batch, single, fresh=False)
        except _ROW_ERRORS:
            async with self._connection() as conn:
                inserted = await self._one_by_one(conn, project_id, batch)
                await self._count(conn, project_id, batch, inserted, single)
        return inserted

    async def _stored(
        self, conn: AsyncConnection[Any], project_id: str, batch: Decoded, single: int, *,
        fresh: bool = False,
    ) -> int:  # fmt: skip
        """Copy a batch and count it in the caller's transaction; returns the rows new.

        ``fresh``: straight in, raising UniqueViolation (the transaction is lost) if a
        record is stored already; otherwise through ON CONFLICT, which never raises it.
        """
        rows = _rows(project_id, batch.values, batch.subjects)
        rows = await pgids.claim(conn, rows, fresh=fresh)
        copy = _direct if fresh else _staged
        inserted = await copy(conn, rows, _LOGS)
        scores = sorted(_score_rows(project_id, batch.scores), key=_KEY)
        inserted += await copy(conn, scores, _SCORES)
        await self._count(conn, project_id, batch, inserted, single)
        return inserted

    async def _one_by_one(self, conn: AsyncConnection[Any], project_id: str, batch: Decoded) -> int:
        rows = _rows(project_id, batch.values, batch.subjects)
        logs, stored = await self._each(conn, batch, rows, batch.indexes, table=_LOGS)
        rows = _score_rows(project_id, batch.scores)
        indexes = batch.score_indexes
        scores, more = await self._each(conn, batch, rows, indexes, table=_SCORES)
        batch.values = [v for n in logs for v in batch.values[n * COLUMNS : (n + 1) * COLUMNS]]
        batch.subjects = [batch.subjects[n] for n in logs]
        width = SCORE_COLUMNS
        batch.scores = [v for n in scores for v in batch.scores[n * width : (n + 1) * width]]
        batch.score_indexes = [batch.score_indexes[n] for n in scores]
        batch.rejected.sort(key=lambda r: r.index)
        return stored + more

    async def _each(
        self, conn: AsyncConnection[Any], batch: Decoded, rows: list[tuple[Any, ...]],
        indexes: Sequence[int], *, table: _Table,
    ) -> tuple[list[int], int]:  # fmt: skip
        """Copy rows one at a time: the positions of those kept, and how many were new."""
        kept, inserted = [], 0
        for n, (index, row) in enumerate(zip(indexes, rows, strict=True)):
            try:
                async with conn.transaction():
                    if table is not _LOGS or await pgids.claim(conn, [row], fresh=False):
                        inserted += await _staged(conn, [row], table)
                    await conn.execute(table.clear)
                kept.append(n)
            except _ROW_ERRORS as exc:
                batch.rejected.append(Rejected(index, f"cannot store: {exc}"))
        return kept, inserted

    async def _count(
        self, conn: AsyncConnection[Any], project_id: str, batch: Decoded, inserted: int,
        single: int,
    ) -> None:  # fmt: skip
        counts = (inserted, batch.count - inserted, len(batch.rejected), 1 - single, single)
        await conn.execute(_COUNT.encode(), (project_id, *counts))

    async def log_ids(self, project_id: str) -> list[str]:
        """Every stored record id of a project, by ts then id."""
        rows = await self._fetch("SELECT id FROM logs WHERE project_id = %s ORDER BY ts, id",
                                 (project_id,))  # fmt: skip
        return [r[0] for r in rows]

    async def summary(self, project_id: str) -> dict[str, int]:
        """The counters, summed over their shards."""
        (row,) = await self._fetch(_SUMMARY, (project_id,))
        names = ("stored", "duplicates", "rejected", "batches", "single")
        return dict(zip(names, map(int, row), strict=True))

    async def stats_rows(self, project_id: str, prompt_name: str) -> list[tuple[Any, ...]]:
        """(version, branch_name, experiment_id, experiment_version_id, duration_ms, model)."""
        return await self._fetch(
            "SELECT version, branch_name, experiment_id, experiment_version_id, duration_ms,"
            " model FROM logs WHERE project_id = %s AND prompt_name = %s",
            (project_id, prompt_name),
        )

    async def prune(self, before: float) -> dict[str, int]:
        """Drop the day partitions that end by ``before``, and older rows of the default
        one and of scores; the rows removed per table."""
        async with self._connection() as conn:
            removed = await pgschema.drop_before(conn, before, self.prune_lock_timeout_ms)
        self._days = {d for d in self._days if (d + 1) * pgschema.DAY > before}
        return removed
