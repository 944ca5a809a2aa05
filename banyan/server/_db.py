"""SQLite storage: the schema, connections, and the threads that own them.

Every write runs on one dedicated writer thread, so SQLite never sees two
writers from one process and the event loop never blocks on disk. Reads run
on a small pool of reader threads with their own connections; WAL mode lets
them proceed while the writer commits. A checkpointer thread copies committed
pages from the WAL into the database file, so the writer never waits for that
copy and its fsync (about a third of the cost of a large batch otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: ``PRAGMA user_version`` of a database this module created; 0 is the unversioned 2.0 draft.
SCHEMA_VERSION = 6

#: Bytes per database page (SQLite's largest).
PAGE_SIZE = 65_536

#: Pages the background checkpointer leaves in the WAL before the writer checkpoints
#: itself (32 MiB). Under a steady stream of batches the WAL seldom empties between
#: two checkpoints, so this is also what restarts it: a WAL kept small is rewritten
#: in page cache it already holds, where a 128 MiB one cost a new server ~1 us more
#: per record.
WAL_PAGES_LIMIT = 512

#: Least seconds between two checkpoints. Under load one pass then copies the
#: batches of that moment together: the index, counter and last table pages that
#: every batch rewrites are copied once, with one pair of fsyncs. An idle
#: database is checkpointed right after its next commit.
CHECKPOINT_INTERVAL = 0.1

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    hash TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    prefix TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    admin INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS prompts (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    enable_logging INTEGER NOT NULL DEFAULT 1,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE IF NOT EXISTS prompt_versions (
    id TEXT PRIMARY KEY,
    prompt_id TEXT NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
    branch TEXT NOT NULL,
    version TEXT NOT NULL,
    seq INTEGER NOT NULL,
    content TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    UNIQUE (prompt_id, branch, version)
);
CREATE INDEX IF NOT EXISTS prompt_versions_latest ON prompt_versions (prompt_id, branch, seq);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    prompt_id TEXT NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
    branch TEXT NOT NULL,
    name TEXT NOT NULL,
    sticky_key TEXT NOT NULL,
    seed TEXT NOT NULL,
    traffic_bp INTEGER NOT NULL,
    hash_version INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_running_experiment
    ON experiments (prompt_id, branch) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS experiment_variants (
    id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    weight_bp INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    project_id TEXT NOT NULL,
    id TEXT NOT NULL,
    ts REAL NOT NULL,
    prompt_name TEXT,
    version TEXT,
    branch_name TEXT,
    model TEXT,
    duration_ms REAL,
    experiment_id TEXT,
    experiment_version_id TEXT,
    record BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS logs_record_id ON logs (project_id, id);
CREATE TABLE IF NOT EXISTS ingest_counters (
    project_id TEXT PRIMARY KEY,
    stored INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    batches INTEGER NOT NULL DEFAULT 0,
    single INTEGER NOT NULL DEFAULT 0
);
"""

#: Answers to the 1.0.1 endpoint's Idempotency-Key requests (#20), per project.
IDEMPOTENCY_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    project_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    response BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (project_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_age ON idempotency_keys (created_at);
"""

#: Experiment results (#18): each log's subject (its sticky value) and two indexes over
#: experiment logs only, so other logs cost ingest nothing more. The first covers the
#: per-subject query (docs/statistics.md), the second walks a variant's latencies in order.
RESULTS_SCHEMA = """
ALTER TABLE logs ADD COLUMN subject TEXT;
CREATE INDEX IF NOT EXISTS logs_experiment_subjects
    ON logs (project_id, experiment_id, experiment_version_id, subject, duration_ms)
    WHERE experiment_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS logs_experiment_latency
    ON logs (project_id, experiment_id, experiment_version_id, duration_ms)
    WHERE experiment_id IS NOT NULL;
"""

#: Outcomes (#18): token usage and cost on logs, and the score records. The per-subject
#: index is rebuilt to cover the usage columns too (the results query reads them beside
#: the latency). Scores have their own table and id space, deduplicated like logs; the
#: analysis reads them by experiment (those attributed by prompt_data) or through the
#: record they name (those attributed by record_id only); both score indexes cover the
#: analysis's reads (kind included: without it each score cost a table lookup, ~2x).
OUTCOMES_SCHEMA = """
ALTER TABLE logs ADD COLUMN input_tokens INTEGER;
ALTER TABLE logs ADD COLUMN output_tokens INTEGER;
ALTER TABLE logs ADD COLUMN cost REAL;
DROP INDEX IF EXISTS logs_experiment_subjects;
CREATE INDEX logs_experiment_subjects ON logs (
    project_id, experiment_id, experiment_version_id, subject,
    duration_ms, input_tokens, output_tokens, cost
) WHERE experiment_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS scores (
    project_id TEXT NOT NULL,
    id TEXT NOT NULL,
    ts REAL NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    value REAL,
    category TEXT,
    record_id TEXT,
    experiment_id TEXT,
    experiment_version_id TEXT,
    subject TEXT,
    record BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS scores_score_id ON scores (project_id, id);
CREATE INDEX IF NOT EXISTS scores_experiment_subjects ON scores (
    project_id, experiment_id, experiment_version_id, subject, name, kind, value, category
) WHERE experiment_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS scores_of_records
    ON scores (project_id, record_id, name, kind, value, category) WHERE experiment_id IS NULL;
"""

#: Subjects over time (#18): the per-subject index ends with ts, so each subject's first
#: day is read from it alone (1M records, 100k subjects: 0.5 s CPU, not 6 s of row lookups).
SERIES_SCHEMA = """
DROP INDEX IF EXISTS logs_experiment_subjects;
CREATE INDEX logs_experiment_subjects ON logs (
    project_id, experiment_id, experiment_version_id, subject,
    duration_ms, input_tokens, output_tokens, cost, ts
) WHERE experiment_id IS NOT NULL;
"""

#: What turns a database of a schema version into one of the next (additive only).
MIGRATIONS = {2: IDEMPOTENCY_SCHEMA, 3: RESULTS_SCHEMA, 4: OUTCOMES_SCHEMA, 5: SERIES_SCHEMA}


def create_private(path: str | Path) -> None:
    """Create ``path`` as an empty 0600 file unless it exists (#14).

    SQLite creates a database 0644 and gives its -wal and -shm files the
    database's mode: made 0600 first, none of them is readable by others.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def connect(path: str | Path) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with the pragmas the server relies on."""
    if str(path) != ":memory:":
        create_private(path)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    # Only a new database takes it: 64 KiB pages cut a batch's WAL frames (and
    # their writes) sixteenfold; insert cost per record falls by about a third.
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA temp_store=MEMORY")
    # The checkpointer thread copies the WAL into the database; see Database.
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES_LIMIT}")
    conn.execute(f"PRAGMA journal_size_limit={WAL_PAGES_LIMIT * PAGE_SIZE}")
    return conn


class SchemaError(RuntimeError):
    """The database was made by another version of the server."""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables in a new database, upgrade an older one; refuse any other."""
    with transaction(conn):
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        (tables,) = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if not version and not tables:
            _execute(
                conn, SCHEMA + IDEMPOTENCY_SCHEMA + RESULTS_SCHEMA + OUTCOMES_SCHEMA + SERIES_SCHEMA
            )
        elif version in MIGRATIONS:
            for step in range(version, SCHEMA_VERSION):
                _execute(conn, MIGRATIONS[step])
        else:
            raise SchemaError(
                f"database schema version {version}, this server needs {SCHEMA_VERSION}:"
                " the file was made by another banyan version; start with a new --db file"
            )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _execute(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


class transaction:
    """``with transaction(conn):`` runs the block in BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def new_id(prefix: str) -> str:
    """A random identifier such as ``prm_3f9a0c1b2d4e5f60``."""
    return f"{prefix}_{os.urandom(8).hex()}"


def now() -> float:
    """Seconds since the epoch, as stored in ``*_at`` columns."""
    return time.time()


def drop_cached(fd: int, start: int) -> int:
    """Evict the file's pages past ``start`` from the OS page cache; returns its size.

    The checkpointer calls this for the pages it just copied (and synced): new
    log pages are rarely read again, and the memory they free takes the next
    ones. Writing into fresh page-cache memory instead (on a VM, faulted in
    from the host) cost the checkpointer 3-5 us per 1.2 KB record, not 1.2 (#3).
    """
    size = os.fstat(fd).st_size
    if size > start and hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, start, size - start, os.POSIX_FADV_DONTNEED)
    return size


class Database:
    """The server's SQLite database, used from the event loop."""

    def __init__(self, path: str | Path, readers: int = 2) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="banyan-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="banyan-reader")
        with contextlib.closing(connect(self.path)) as conn:
            create_schema(conn)
        self._committed = threading.Event()
        self._closing = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="banyan-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(self._conn(), *args)

    def _run_in_transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._conn()
        with transaction(conn):
            result = fn(conn, *args)
        self._committed.set()
        return result

    def _checkpoint_loop(self) -> None:
        conn = self._conn()
        with open(self.path, "rb") as db_file:
            dropped = os.fstat(db_file.fileno()).st_size
            last = time.monotonic() - CHECKPOINT_INTERVAL
            while not self._closing.is_set():
                self._committed.wait()
                self._closing.wait(last + CHECKPOINT_INTERVAL - time.monotonic())
                self._committed.clear()
                last = time.monotonic()
                # PASSIVE never blocks the writer; the WAL restarts once it is all copied.
                # On failure the writer's own autocheckpoint (WAL_PAGES_LIMIT) takes over.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                dropped = drop_cached(db_file.fileno(), dropped)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run, fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one committed transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._run_in_transaction, fn, args)

    def close(self) -> None:
        """Finish queued work, then close every connection (checkpointing the WAL)."""
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self._closing.set()
        self._committed.set()
        self._checkpointer.join()
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
