"""The SQLite engine: the Store over ``_db.Database`` and the handlers' own SQL.

Writes run on Database's one writer thread (each call one transaction), reads
on its reader threads, and its checkpointer copies the WAL; ingest is
``_logs.store`` unchanged (chunked multi-row INSERT OR IGNORE, one counter
upsert). The methods call the functions the handlers call today, so both
paths share one set of SQL; the few statements that live only inline in a
handler are the small functions below (docs/storage.md names the lines they
replace). A handler's HTTPError 404 or 409 becomes NotFound or Conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from banyan import _routing
from banyan.server import _auth, _db, _experiments, _idempotency, _legacy, _logs, _prompts
from banyan.server._http import HTTPError
from banyan.server._ingest import Decoded
from banyan.server.analysis import (
    RECORD_METRICS,
    VariantAggregate,
    score_metrics,
    sqlite_aggregates,
    with_scores,
)
from banyan.server.store import (
    Bootstrap,
    Conflict,
    Item,
    NotFound,
    Page,
    SchemaError,
    StatsRow,
)
from banyan.server.store.series import FirstSeen, sqlite_series

T = TypeVar("T")
_ERRORS: dict[int, type[NotFound | Conflict]] = {404: NotFound, 409: Conflict}
#: Rows one prune transaction deletes: the writer thread takes ingest batches between two.
PRUNE_CHUNK = 5000


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except HTTPError as exc:
        if exc.status not in _ERRORS:
            raise
        raise _ERRORS[exc.status](exc.message) from None


def _bootstrap(path: str, key: str | None) -> Bootstrap:
    # _auth.bootstrap runs its own transaction, so not on the writer (which opens one).
    with contextlib.closing(_db.connect(path)) as conn:
        return Bootstrap(*_auth.bootstrap(conn, key))


def _create_project(conn: sqlite3.Connection, name: str, digest: str, prefix: str) -> Item:
    project_id = _auth.insert_project(conn, name)
    _auth.insert_key(conn, project_id, digest, prefix, admin=False, label="first key")
    project = _auth.project_row(conn, project_id)
    assert project is not None
    return project


def _revoke_key(conn: sqlite3.Connection, project_id: str, digest: str) -> None:
    sql = "DELETE FROM api_keys WHERE project_id = ? AND hash = ?"
    if not conn.execute(sql, (project_id, digest)).rowcount:
        raise NotFound("no such key in this project")


def _prompt_by_id(conn: sqlite3.Connection, project_id: str, prompt_id: str) -> Item | None:
    try:
        return _legacy._by_id(conn, project_id, prompt_id)
    except HTTPError:
        return None


def _update_prompt(
    conn: sqlite3.Connection, project_id: str, prompt_id: str, enable: bool | None,
    metadata: Item | None,
) -> None:  # fmt: skip
    if _prompt_by_id(conn, project_id, prompt_id) is not None:
        _prompts.set_fields(conn, prompt_id, enable, metadata)


def _delete_prompt(conn: sqlite3.Connection, project_id: str, prompt_id: str) -> None:
    prompt = _legacy._by_id(conn, project_id, prompt_id)
    conn.execute("DELETE FROM prompts WHERE id = ?", (prompt["id"],))


def _create_branch(conn: sqlite3.Connection, prompt_id: str, branch: str, source: str) -> Item:
    if _prompts.get_version(conn, prompt_id, branch, None) is not None:
        raise Conflict(f"branch {branch!r} already exists")
    base = _prompts.get_version(conn, prompt_id, source, None)
    if base is None:
        raise NotFound(f"no branch {source!r}")
    _prompts.add_version(conn, prompt_id, branch, base["content"], version=base["version"],
                         message=f"branched from {source}@{base['version']}")  # fmt: skip
    return {"name": branch, "from": source, "latest_version": base["version"], "versions": 1}


def _create_experiment(
    conn: sqlite3.Connection, project_id: str, prompt_id: str, branch: str,
    config: _routing.Experiment, *, start: bool,
) -> Item:  # fmt: skip
    _experiments._insert(conn, project_id, prompt_id, branch, config)
    return _set_status(conn, project_id, config.id, "running") if start else (
        _experiments.describe(conn, project_id, config.id))  # fmt: skip


def _set_status(conn: sqlite3.Connection, project_id: str, exp_id: str, status: str) -> Item:
    _experiments.set_status(conn, project_id, exp_id, status)
    return _experiments.describe(conn, project_id, exp_id)


def _stats_rows(conn: sqlite3.Connection, project_id: str, prompt: str) -> list[StatsRow]:
    return conn.execute(
        "SELECT version, branch_name, experiment_id, experiment_version_id, duration_ms, model"
        " FROM logs WHERE project_id = ? AND prompt_name = ?",
        (project_id, prompt),
    ).fetchall()


def _ingest_once(
    conn: sqlite3.Connection, project_id: str, batch: Decoded, key: str, *, fingerprint: str,
    answer: Callable[[int], _idempotency.Answer],
) -> _idempotency.Remembered:  # fmt: skip
    kept = _idempotency.replay(conn, project_id, key)
    if kept is None:
        kept = fingerprint, answer(_logs.store(conn, project_id, batch, 1))
        _idempotency.remember(conn, project_id, key, kept)
    return kept


#: The tables prune() deletes old rows of, by their ts.
_PRUNED = ("logs", "scores")


def _prune_chunk(
    conn: sqlite3.Connection, table: str, before: float, after: int
) -> tuple[int, int]:
    # Walks the table in rowid order from ``after``: no index on ts, and no rescan.
    rows = conn.execute(
        f"SELECT rowid FROM {table} WHERE rowid > ? AND ts < ? ORDER BY rowid LIMIT ?",
        (after, before, PRUNE_CHUNK),
    ).fetchall()
    conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", rows)
    return len(rows), rows[-1][0] if rows else after


class SqliteStore:
    """A Store on one SQLite file; make one with ``await SqliteStore.open(path)``.

    ``SqliteStore(database)`` wraps a Database the handlers already use, so
    both can share its writer thread while the handlers move over.
    """

    def __init__(self, database: _db.Database) -> None:
        self.database = database

    def __repr__(self) -> str:
        return f"SqliteStore({self.database.path!r})"

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, readers: int = 2) -> SqliteStore:
        """Open (creating or upgrading) the database at ``path``; SchemaError if newer."""
        try:
            database = await asyncio.to_thread(_db.Database, os.fspath(path), readers)
        except _db.SchemaError as exc:
            raise SchemaError(str(exc)) from None
        return cls(database)

    async def close(self) -> None:
        """Finish queued work, then close every connection (checkpointing the WAL)."""
        await asyncio.to_thread(self.database.close)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        with _translated():
            return await self.database.read(fn, *args)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        with _translated():
            return await self.database.write(fn, *args)

    async def bootstrap(self, key: str | None) -> Bootstrap:
        """Make sure the default project and an admin key exist (_auth.bootstrap)."""
        return await asyncio.to_thread(_bootstrap, self.database.path, key)

    async def principal(self, digest: str) -> _auth.Principal | None:
        """Who the key with this digest speaks for, or None."""
        return await self._read(_auth.lookup, digest)

    async def project(self, project_id: str) -> Item | None:
        """A project (id, name, created_at), or None."""
        return await self._read(_auth.project_row, project_id)

    async def create_project(self, name: str, digest: str, prefix: str) -> Item:
        """A new project and its first key; Conflict when the name is taken."""
        return await self._write(_create_project, name, digest, prefix)

    async def add_key(
        self, project_id: str, digest: str, prefix: str, *, admin: bool, label: str = ""
    ) -> None:
        """Store a key digest for a project, unless it is stored already."""
        insert = functools.partial(_auth.insert_key, admin=admin, label=label)
        await self._write(insert, project_id, digest, prefix)

    async def revoke_key(self, project_id: str, digest: str) -> None:
        """Delete a project's key by digest; NotFound when the project has no such key."""
        await self._write(_revoke_key, project_id, digest)

    async def prompt(self, project_id: str, name: str) -> Item | None:
        """A prompt by name, or None."""
        return await self._read(_prompts.find, project_id, name)

    async def prompt_by_id(self, project_id: str, prompt_id: str) -> Item | None:
        """A prompt by id, or None."""
        return await self._read(_prompt_by_id, project_id, prompt_id)

    async def prompts(self, project_id: str) -> list[Item]:
        """Every prompt of a project by name, each with its branches."""
        return await self._read(_prompts._list, project_id)

    async def create_prompt(self, project_id: str, name: str, body: Item) -> Item:
        """A prompt and its first version from a checked body; Conflict when it exists."""
        return await self._write(_prompts.create, project_id, name, body)

    async def update_prompt(
        self, project_id: str, prompt_id: str, enable: bool | None, metadata: Item | None
    ) -> None:
        """Set a prompt's logging switch and metadata (None leaves a field alone)."""
        await self._write(_update_prompt, project_id, prompt_id, enable, metadata)

    async def delete_prompt(self, project_id: str, prompt_id: str) -> None:
        """Delete a prompt with its versions and experiments; NotFound when absent."""
        await self._write(_delete_prompt, project_id, prompt_id)

    async def add_version(
        self,
        prompt_id: str,
        branch: str,
        content: str,
        *,
        version: str | None = None,
        message: str = "",
        metadata: Item | None = None,
    ) -> Item:
        """Append a version (the next number when ``version`` is None); Conflict if taken."""
        add = functools.partial(
            _prompts.add_version, version=version, message=message, metadata=metadata
        )
        return await self._write(add, prompt_id, branch, content)

    async def version(self, prompt_id: str, branch: str, version: str | None) -> Item | None:
        """A version of a branch, the latest when ``version`` is None."""
        return await self._read(_prompts.get_version, prompt_id, branch, version)

    async def versions(self, prompt_id: str, branch: str | None) -> list[Item]:
        """A prompt's versions (of one branch when given), by branch then age."""
        return await self._read(_prompts.versions, prompt_id, branch)

    async def branches(self, prompt_id: str) -> list[Item]:
        """Each branch: name, latest_version, versions, by name."""
        return await self._read(_prompts.branches, prompt_id)

    async def create_branch(self, prompt_id: str, branch: str, source: str) -> Item:
        """Start ``branch`` at ``source``'s latest version; Conflict, or NotFound for source."""
        return await self._write(_create_branch, prompt_id, branch, source)

    async def create_experiment(
        self, project_id: str, prompt_id: str, branch: str, config: _routing.Experiment, *,
        start: bool,
    ) -> Item:  # fmt: skip
        """Store a validated experiment (started when ``start``); returns it described."""
        create = functools.partial(_create_experiment, start=start)
        return await self._write(create, project_id, prompt_id, branch, config)

    async def experiment(self, project_id: str, exp_id: str) -> Item:
        """An experiment as the v2 endpoints return it; NotFound when absent."""
        return await self._read(_experiments.describe, project_id, exp_id)

    async def experiment_config(self, project_id: str, exp_id: str) -> _routing.Experiment:
        """The routing configuration of an experiment, variant content included."""
        return await self._read(_experiments.config, project_id, exp_id)

    async def running_experiment(
        self, project_id: str, prompt_id: str, branch: str
    ) -> _routing.Experiment | None:
        """The experiment running on a prompt's branch, if any."""
        return await self._read(_experiments.running, project_id, prompt_id, branch)

    async def experiments(self, project_id: str, prompt: str | None) -> list[Item]:
        """A project's experiments (of one prompt name when given), oldest first."""
        return await self._read(_experiments._list, project_id, prompt)

    async def set_experiment_status(self, project_id: str, exp_id: str, status: str) -> Item:
        """Start ("running") or stop ("stopped"); Conflict when another runs on the branch."""
        return await self._write(_set_status, project_id, exp_id, status)

    async def ship_experiment(
        self, project_id: str, exp_id: str, version: str, message: str
    ) -> Item:
        """Stop the experiment and append a copy of ``version``; Conflict if it is gone."""
        return await self._write(_experiments.ship, project_id, exp_id, version, message)

    async def ingest(self, project_id: str, batch: Decoded, single: int) -> int:
        """Store a decoded batch once per record id (_logs.store on the writer thread)."""
        return await self._write(_logs.store, project_id, batch, single)

    async def ingest_once(
        self, project_id: str, batch: Decoded, key: str, fingerprint: str,
        answer: Callable[[int], _idempotency.Answer],
    ) -> _idempotency.Remembered:  # fmt: skip
        """Ingest one record under an Idempotency-Key, once (one writer transaction)."""
        once = functools.partial(_ingest_once, fingerprint=fingerprint, answer=answer)
        return await self._write(once, project_id, batch, key)

    async def log_ids(self, project_id: str) -> list[str]:
        """Every stored record id of a project, in the order stored."""
        return await self._read(_logs._ids, project_id)

    async def logs_page(self, project_id: str, page: Page) -> tuple[list[bytes], str | None]:
        """One page of records in the order stored; the cursor is a rowid."""
        return await self._read(_logs._page, project_id, page)

    async def summary(self, project_id: str) -> dict[str, int]:
        """The counters: stored, duplicates, rejected, batches, single."""
        return await self._read(_logs._summary, project_id)

    async def stats_rows(self, project_id: str, prompt_name: str) -> list[StatsRow]:
        """(version, branch_name, experiment_id, experiment_version_id, duration_ms, model)."""
        return await self._read(_stats_rows, project_id, prompt_name)

    async def result_aggregates(
        self, project_id: str, exp_id: str, *, alpha: float = 0.05, tau: float | None = None
    ) -> list[VariantAggregate]:
        """Latency, usage, cost and score sums per variant (analysis.sqlite_outcomes's
        statements), the logs' and the scores' on two reader threads at once."""
        bounded = functools.partial(sqlite_aggregates, alpha=alpha, tau=tau)
        logs, scores = await asyncio.gather(
            self._read(bounded, project_id, exp_id, RECORD_METRICS),
            self._read(score_metrics, project_id, exp_id),
        )
        return with_scores(logs, scores)

    async def subject_series(self, project_id: str, exp_id: str) -> list[FirstSeen]:
        """The new subjects per variant and UTC day (store/series.py), on a reader thread."""
        return await self._read(sqlite_series, project_id, exp_id)

    async def prune(self, before: float) -> dict[str, int]:
        """Delete logs and scores older than ``before``, PRUNE_CHUNK rows per writer
        transaction; the rows deleted per table."""
        removed = dict.fromkeys(_PRUNED, 0)
        for table in _PRUNED:
            deleted, after = PRUNE_CHUNK, 0
            while deleted == PRUNE_CHUNK:
                deleted, after = await self._write(_prune_chunk, table, before, after)
                removed[table] += deleted
        return removed
