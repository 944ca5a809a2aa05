"""The logs table in-process: schema version, the stored record, chunked inserts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from banyan._record import Record
from banyan._wire import JSON, MSGPACK
from banyan.server import _db, _ingest, _logs, _rules

from .helpers import body, record


def _store(db: _db.Database, payload: bytes, kind: str = MSGPACK) -> tuple[int, _ingest.Decoded]:
    batch = _ingest.decode(payload, kind)
    inserted = asyncio.run(db.write(_logs.store, "prj_t", batch, 0))
    return inserted, batch


@pytest.fixture
def db(tmp_path: Path) -> Iterator[_db.Database]:
    database = _db.Database(tmp_path / "t.db")
    yield database
    database.close()


def _rows(db: _db.Database) -> list[tuple[Any, ...]]:
    with contextlib.closing(_db.connect(db.path)) as conn:
        return conn.execute("SELECT * FROM logs ORDER BY rowid").fetchall()


def test_new_database_carries_the_schema_version(db: _db.Database) -> None:
    """A new database gets user_version = SCHEMA_VERSION and opens again."""
    with contextlib.closing(_db.connect(db.path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION
        _db.create_schema(conn)


@pytest.mark.parametrize("version", [0, 1, _db.SCHEMA_VERSION + 1])
def test_database_of_another_schema_version_is_refused(tmp_path: Path, version: int) -> None:
    """A database made by another server version is refused with a clear error."""
    with contextlib.closing(sqlite3.connect(tmp_path / "old.db")) as conn:
        conn.execute("CREATE TABLE logs (project_id TEXT, id TEXT, input TEXT)")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
    with pytest.raises(_db.SchemaError, match="start with a new --db file"):
        _db.Database(tmp_path / "old.db")


def test_record_is_stored_as_its_messagepack_with_nulls(db: _db.Database) -> None:
    """Absent fields are SQL NULL; the record column holds the MessagePack as sent."""
    rec = record("r-1", metadata={"k": [1, 2]}, model="m", duration_ms=3.5)
    assert _store(db, body([rec]))[0] == 1
    (row,) = _rows(db)
    assert row[:10] == ("prj_t", "r-1", rec.ts, None, None, None, "m", 3.5, None, None)
    assert msgspec.msgpack.decode(row[10], type=Record) == rec


def test_json_record_is_stored_as_messagepack(db: _db.Database) -> None:
    """A JSON body's record is re-encoded; one MessagePack cannot hold is rejected."""
    items = [msgspec.to_builtins(record("j-1")), {**msgspec.to_builtins(record("j-2")),
             "metadata": {"big": 2**70}}]  # fmt: skip
    inserted, batch = _store(db, json.dumps(items).encode(), JSON)
    assert inserted == 1
    assert [r.index for r in batch.rejected] == [1]
    assert msgspec.msgpack.decode(_rows(db)[0][10], type=Record).id == "j-1"


def test_large_batch_spans_chunks_with_duplicates_and_rejects(db: _db.Database) -> None:
    """Past one INSERT chunk, duplicates and rejected records are still counted exactly."""
    recs: list[Record | dict[str, str]] = [record(f"c-{i}") for i in range(2_500)]
    recs[1_500] = record("c-3")  # repeats an id from the first chunk
    recs[2_000] = {"id": "bad"}
    inserted, batch = _store(db, body(recs))
    assert (inserted, batch.count - inserted) == (2_498, 1)
    assert [r.index for r in batch.rejected] == [2_000]
    assert len(_rows(db)) == 2_498
    assert _store(db, body(recs))[0] == 0


def test_row_sqlite_refuses_is_rejected_and_the_others_stored(db: _db.Database) -> None:
    """A value SQLite cannot bind rejects its record by index; the rest of the batch is kept."""
    batch = _ingest.decode(body([record(f"s-{i}") for i in range(3)]), MSGPACK)
    batch.values[_rules.COLUMNS + 1] = 2**70  # ts of record 1: too big for SQLite
    inserted = asyncio.run(db.write(_logs.store, "prj_t", batch, 0))
    assert (inserted, batch.count) == (2, 2)
    assert [(r.index, "cannot store" in r.error) for r in batch.rejected] == [(1, True)]
    assert [row[1] for row in _rows(db)] == ["s-0", "s-2"]


def test_checkpointer_evicts_the_database_pages_it_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a commit the checkpointer drops the file's new pages from the OS cache (#3)."""
    dropped: list[tuple[int, int, int]] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, *args: dropped.append(args), raising=False)
    db = _db.Database(tmp_path / "t.db")
    try:
        before = os.path.getsize(db.path)
        _store(db, body([record(f"e-{i}", input="x" * 1000) for i in range(300)]))
        deadline = time.monotonic() + 10
        while not dropped or sum(n for _, n, _ in dropped) < os.path.getsize(db.path) - before:
            assert time.monotonic() < deadline, (dropped, before, os.path.getsize(db.path))
            time.sleep(0.01)
    finally:
        db.close()
    assert dropped[0][0] == before
    assert {advice for _, _, advice in dropped} == {os.POSIX_FADV_DONTNEED}


def test_drop_cached_skips_a_file_that_did_not_grow(tmp_path: Path) -> None:
    """drop_cached returns the file's size and asks for nothing when it did not grow."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10_000)
    with path.open("rb") as f:
        assert _db.drop_cached(f.fileno(), 0) == 10_000
        assert _db.drop_cached(f.fileno(), 10_000) == 10_000


def test_batch_takes_a_few_multi_row_inserts_not_one_per_row(tmp_path: Path) -> None:
    """1,500 rows take 9 INSERTs (1024, 256, 3 x 64, 16, 3 x 4), the project bound once each."""
    with contextlib.closing(_db.connect(tmp_path / "t.db")) as conn:
        _db.create_schema(conn)
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        batch = _ingest.decode(body([record(f"t-{i}") for i in range(1_500)]), MSGPACK)
        with _db.transaction(conn):
            assert _logs.store(conn, "prj_t", batch, 0) == 1_500
        conn.set_trace_callback(None)
        stored = conn.execute("SELECT count(*), min(project_id) FROM logs").fetchone()
    inserts = [s for s in statements if s.startswith("INSERT OR IGNORE INTO logs")]
    assert len(inserts) == 9
    assert stored == (1_500, "prj_t")


def test_checkpoints_are_at_least_an_interval_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first commit is checkpointed at once; the commits right after wait for one pass."""
    # A first pass that waited an interval would never come while the test polls (30 s).
    monkeypatch.setattr(_db, "CHECKPOINT_INTERVAL", 60.0)
    passes: list[float] = []
    real = _db.drop_cached

    def drop_cached(fd: int, start: int) -> int:
        passes.append(time.monotonic())
        return real(fd, start)

    monkeypatch.setattr(_db, "drop_cached", drop_cached)
    started = time.monotonic()

    def wait_for_passes(count: int) -> None:
        while len(passes) < count:
            assert time.monotonic() - started < 30
            time.sleep(0.005)

    db = _db.Database(tmp_path / "t.db")
    try:
        _store(db, body([record("first")]))
        wait_for_passes(1)
        # Read after the next commit, so the checkpointer's next wait uses it.
        monkeypatch.setattr(_db, "CHECKPOINT_INTERVAL", 0.5)
        for i in range(5):
            _store(db, body([record(f"next-{i}")]))
        wait_for_passes(2)
    finally:
        db.close()
    assert len(passes) >= 2
    assert passes[1] - passes[0] >= 0.45
    assert sum(1 for t in passes if t < passes[0] + 0.45) == 1


def test_wal_stays_bounded_between_background_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the checkpointer waiting, the writer's own checkpoint keeps the WAL file small."""
    monkeypatch.setattr(_db, "CHECKPOINT_INTERVAL", 60.0)
    monkeypatch.setattr(_db, "WAL_PAGES_LIMIT", 16)
    db = _db.Database(tmp_path / "t.db")
    try:
        for i in range(30):
            _store(db, body([record(f"w-{i}-{j}", input="x" * 2_000) for j in range(100)]))
        wal = os.path.getsize(f"{db.path}-wal")
    finally:
        db.close()
    # 30 batches of ~200 KB would be ~6 MiB of WAL; 16 pages are 1 MiB.
    assert wal < 2 * 1024 * 1024


def test_an_in_memory_database_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_db.connect(":memory:") opens SQLite's in-memory database and creates no file."""
    monkeypatch.chdir(tmp_path)
    _db.connect(":memory:").close()
    assert list(tmp_path.iterdir()) == []
