"""PostgreSQL schema: versioned migrations and the time partitions of ``logs``.

Migrations run in one transaction under a transaction-level advisory lock:
instances starting together wait for each other, and a crash mid-way leaves
the previous version whole. A database whose version is newer than
``SCHEMA_VERSION`` is refused.

``logs`` is partitioned by RANGE on ``ts`` (epoch seconds), one partition per
UTC day, created ahead of need; rows outside the window of created days land
in ``logs_default`` and move into a day's partition when it is created.
Retention drops whole day partitions. PostgreSQL requires a unique index on a
partitioned table to hold the partition key, so that index is
``(project_id, id, ts)``; ``record_ids`` (pgids) keeps each id once per project.
"""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection, sql

from banyan.server.store import SchemaError

DAY = 86_400
#: Days past today for which partitions are created ahead.
AHEAD_DAYS = 2
#: Days before today for which a late record gets its own partition (older: default).
BACK_DAYS = 31
#: Rows retention deletes per transaction (record ids, default partition, scores).
PRUNE_CHUNK = 5000
#: Keys of pg_advisory_xact_lock: the migration, partition changes.
MIGRATION_LOCK, PARTITION_LOCK = 0x62616E79616E01, 0x62616E79616E02

_V1 = """
CREATE TABLE projects (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at double precision NOT NULL
);
CREATE TABLE api_keys (
    hash text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects(id),
    prefix text NOT NULL,
    label text NOT NULL DEFAULT '',
    admin boolean NOT NULL DEFAULT false,
    created_at double precision NOT NULL
);
CREATE TABLE prompts (
    id text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects(id),
    name text NOT NULL,
    enable_logging boolean NOT NULL DEFAULT true,
    metadata text NOT NULL DEFAULT '{}',
    created_at double precision NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE prompt_versions (
    id text PRIMARY KEY,
    prompt_id text NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
    branch text NOT NULL,
    version text NOT NULL,
    seq integer NOT NULL,
    content text NOT NULL,
    message text NOT NULL DEFAULT '',
    metadata text NOT NULL DEFAULT '{}',
    created_at double precision NOT NULL,
    UNIQUE (prompt_id, branch, version)
);
CREATE INDEX prompt_versions_latest ON prompt_versions (prompt_id, branch, seq);
CREATE TABLE experiments (
    id text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects(id),
    prompt_id text NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
    branch text NOT NULL,
    name text NOT NULL,
    sticky_key text NOT NULL,
    seed text NOT NULL,
    traffic_bp integer NOT NULL,
    hash_version integer NOT NULL,
    status text NOT NULL,
    created_at double precision NOT NULL
);
CREATE UNIQUE INDEX one_running_experiment ON experiments (prompt_id, branch)
    WHERE status = 'running';
CREATE TABLE experiment_variants (
    id text PRIMARY KEY,
    experiment_id text NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    position integer NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    weight_bp integer NOT NULL
);
CREATE TABLE logs (
    project_id text NOT NULL,
    id text NOT NULL,
    ts double precision NOT NULL,
    prompt_name text,
    version text,
    branch_name text,
    model text,
    duration_ms double precision,
    experiment_id text,
    experiment_version_id text,
    record bytea NOT NULL
) PARTITION BY RANGE (ts);
CREATE UNIQUE INDEX logs_record_id ON logs (project_id, id, ts);
CREATE TABLE logs_default PARTITION OF logs DEFAULT;
CREATE TABLE ingest_counters (
    project_id text NOT NULL,
    shard smallint NOT NULL,
    stored bigint NOT NULL DEFAULT 0,
    duplicates bigint NOT NULL DEFAULT 0,
    rejected bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    single bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, shard)
);
CREATE TABLE idempotency_keys (
    project_id text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    status integer NOT NULL,
    response bytea NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (project_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
"""

#: Experiment results and outcomes (#18): each log's subject and usage, the score records.
#: The per-subject index holds the metric columns (INCLUDE) so the results query reads
#: the index alone; it is partial, so logs outside experiments cost ingest nothing more.
#: ``scores`` is not partitioned: a partitioned table's unique index must hold the
#: partition key, and scores are deduplicated by (project_id, id) alone; they are far
#: fewer than logs, and retention deletes their old rows (drop_before).
_V2 = """
ALTER TABLE logs ADD COLUMN subject text, ADD COLUMN input_tokens bigint,
    ADD COLUMN output_tokens bigint, ADD COLUMN cost double precision;
CREATE INDEX logs_experiment_subjects
    ON logs (project_id, experiment_id, experiment_version_id, subject)
    INCLUDE (duration_ms, input_tokens, output_tokens, cost) WHERE experiment_id IS NOT NULL;
CREATE TABLE scores (
    project_id text NOT NULL,
    id text NOT NULL,
    ts double precision NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    value double precision,
    category text,
    record_id text,
    experiment_id text,
    experiment_version_id text,
    subject text,
    record bytea NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX scores_experiment_subjects
    ON scores (project_id, experiment_id, experiment_version_id, subject)
    INCLUDE (name, kind, value, category) WHERE experiment_id IS NOT NULL;
CREATE INDEX scores_of_records ON scores (project_id, record_id)
    INCLUDE (name, kind, value, category) WHERE experiment_id IS NULL;
CREATE INDEX scores_ts ON scores (ts);
"""

#: GET /api/v2/logs pages by (ts, id) within a project: the record's unique index in
#: that order serves each page as an index range scan (a page in the middle of a large
#: project sorted all its rows before), and the uniqueness it enforces is unchanged.
#: Built at upgrade under a SHARE lock on logs: ingest waits for it (docs/storage.md).
_V3 = """
CREATE UNIQUE INDEX logs_page_order ON logs (project_id, ts, id);
DROP INDEX logs_record_id;
"""

#: Each record id once per project, whatever its ts (pgids); rows stored twice
#: before this version stay, their id claimed by the earliest. Byte order ("C")
#: is enough for equality and cheaper to keep than a locale's.
_V4 = """
CREATE TABLE record_ids (
    project_id text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    ts double precision NOT NULL,
    PRIMARY KEY (project_id, id)
);
INSERT INTO record_ids
    SELECT DISTINCT ON (project_id, id) project_id, id, ts FROM logs ORDER BY project_id, id, ts;
"""

#: MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS banyan_schema (version integer NOT NULL)"


async def migrate(conn: AsyncConnection[Any], migrations: tuple[str, ...] = MIGRATIONS) -> int:
    """Bring the database to ``len(migrations)`` in one transaction; returns the old version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(_VERSION_TABLE)
        cur = await conn.execute("SELECT max(version), to_regclass('projects') FROM banyan_schema")
        found, projects = await cur.fetchone() or (None, None)
        version = found or 0
        if version > len(migrations):
            raise SchemaError(
                f"database schema version {version} is newer than this server's"
                f" {len(migrations)}: upgrade banyan-sdk on every instance before starting it"
            )
        if found is None and projects is not None:
            raise SchemaError("the database has a projects table but no banyan_schema version")
        for statement in migrations[version:]:
            await conn.execute(statement.encode())
        if version < len(migrations):
            await conn.execute("DELETE FROM banyan_schema")
            await conn.execute("INSERT INTO banyan_schema VALUES (%s)", (len(migrations),))
    return version


def partition_name(day: int) -> str:
    """The table holding the logs of ``day`` (days since the epoch, UTC): logs_YYYYMMDD."""
    return "logs_" + time.strftime("%Y%m%d", time.gmtime(day * DAY))


def wanted_days(ts: Iterable[float], now: float) -> set[int]:
    """The days with their own partition among a batch's ``ts``, plus the days ahead."""
    today = int(now // DAY)
    days = set(range(today, today + AHEAD_DAYS + 1))
    low, high = today - BACK_DAYS, today + AHEAD_DAYS
    # The distinct floors first (a C map): a batch spans a day or two.
    days.update(d for d in map(int, set(map(float(DAY).__rfloordiv__, ts))) if low <= d <= high)
    return days


async def existing_days(conn: AsyncConnection[Any]) -> set[int]:
    """The days that have a partition."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'logs'::regclass AND c.relname ~ '^logs_[0-9]{8}$'"
    )
    return {_day(name) for (name,) in await cur.fetchall()}


def _day(name: str) -> int:
    return calendar.timegm(time.strptime(name[5:], "%Y%m%d")) // DAY


async def create_partition(conn: AsyncConnection[Any], day: int, lock_timeout_ms: int) -> None:
    """Give ``day`` its partition, moving its rows out of ``logs_default`` (idempotent).

    Raises LockNotAvailable after ``lock_timeout_ms`` waiting for a table lock.
    """
    name = sql.Identifier(partition_name(day))
    low, high = day * DAY, (day + 1) * DAY
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(lock_timeout_ms))
        if day in await existing_days(conn):
            return
        # Held to the end: no row of this day may enter the default partition meanwhile.
        await conn.execute("LOCK TABLE logs_default IN SHARE ROW EXCLUSIVE MODE")
        await conn.execute(
            "CREATE TEMP TABLE moved AS WITH d AS (DELETE FROM logs_default"
            " WHERE ts >= %s AND ts < %s RETURNING *) SELECT * FROM d",
            (low, high),
        )
        bounds = sql.SQL("CREATE TABLE {} PARTITION OF logs FOR VALUES FROM ({}) TO ({})")
        await conn.execute(bounds.format(name, sql.Literal(low), sql.Literal(high)))
        await conn.execute("INSERT INTO logs SELECT * FROM moved")
        await conn.execute("DROP TABLE moved")


async def drop_before(
    conn: AsyncConnection[Any], before: float, lock_timeout_ms: int
) -> dict[str, int]:
    """Drop the day partitions that end by ``before`` and older rows of logs_default and
    scores; the rows removed per table.

    Only the DROPs lock ``logs`` (exclusively): the doomed partitions' record ids are
    deleted first, through their key, and the older rows of logs_default (with their
    ids) and scores after, PRUNE_CHUNK rows per transaction (#17). ``lock_timeout``
    bounds the wait for that lock: a drop queued behind a long reader would otherwise
    stall every ingest behind it.
    """
    async with conn.transaction():
        freed = [day for day in sorted(await existing_days(conn)) if (day + 1) * DAY <= before]
    for day in freed:
        ids = sql.SQL(_FREE_IDS).format(sql.Identifier(partition_name(day)))
        await _chunks(conn, ids, ("", -math.inf, ""))
    logs = await _drop(conn, set(freed), lock_timeout_ms)
    logs += await _chunks(conn, sql.SQL(_DELETE_DEFAULT), (before,))
    scores = await _chunks(conn, sql.SQL(_DELETE_SCORES), (before,))
    return {"logs": logs, "scores": scores}


async def _drop(conn: AsyncConnection[Any], freed: set[int], lock_timeout_ms: int) -> int:
    """Drop the partitions of ``freed`` days that still exist; the rows they held.

    They are counted first under a SHARE lock (readers go on, a late record for their
    day waits), before the first DROP locks ``logs``.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(lock_timeout_ms))
        doomed = [sql.Identifier(partition_name(day))
                  for day in sorted(freed & await existing_days(conn))]  # fmt: skip
        logs = 0
        for table in doomed:
            await conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table))
            cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
            logs += (await cur.fetchone() or (0,))[0]
        for table in doomed:
            await conn.execute(sql.SQL("DROP TABLE {}").format(table))
        return logs


#: One chunk of a doomed partition's ids, in its unique index's order after the last
#: chunk's key; answers the chunk's size and its last key. Only a row's own claim goes
#: (same ts): a later record may have claimed the id again. A record stored for the day
#: between its chunk and the DROP keeps its claim (a retry of a pruned record).
_FREE_IDS = """
WITH chunk AS MATERIALIZED (
    SELECT project_id, ts, id FROM {} WHERE (project_id, ts, id) > (%s, %s, %s)
    ORDER BY project_id, ts, id LIMIT %s
), freed AS (
    DELETE FROM record_ids r USING chunk c WHERE r.project_id = c.project_id COLLATE "C"
    AND r.id = c.id COLLATE "C" AND r.ts = c.ts
)
SELECT (SELECT count(*) FROM chunk), project_id, ts, id FROM chunk
ORDER BY project_id DESC, ts DESC, id DESC LIMIT 1
"""
_DELETE_DEFAULT = """
WITH gone AS (
    DELETE FROM logs_default WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM logs_default WHERE ts < %s LIMIT %s
    )) RETURNING project_id, id, ts
), freed AS (
    DELETE FROM record_ids r USING gone g WHERE r.project_id = g.project_id COLLATE "C"
    AND r.id = g.id COLLATE "C" AND r.ts = g.ts
)
SELECT count(*) FROM gone
"""
_DELETE_SCORES = """
WITH gone AS (
    DELETE FROM scores WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM scores WHERE ts < %s LIMIT %s
    )) RETURNING 1
)
SELECT count(*) FROM gone
"""


async def _chunks(
    conn: AsyncConnection[Any], query: sql.Composed | sql.SQL, args: tuple[Any, ...]
) -> int:
    """Run ``query`` with ``args`` and PRUNE_CHUNK, each time in its own transaction, until a
    chunk comes back short; the rows it handled. It answers the chunk's size, then (for
    _FREE_IDS) the key that the next chunk's ``args`` start after."""
    total = 0
    while True:
        async with conn.transaction():
            row = await (await conn.execute(query, (*args, PRUNE_CHUNK))).fetchone()
        count, *key = row or (0,)
        total += count
        if count < PRUNE_CHUNK:
            return total
        args = tuple(key) or args
