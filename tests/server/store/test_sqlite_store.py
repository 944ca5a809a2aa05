"""SqliteStore only: ingest on the writer thread, rows SQLite refuses, prune in chunks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from banyan.server import _logs
from banyan.server.store import Store, sqlite
from banyan.server.store.sqlite import SqliteStore

from .records import batch, run

TS = time.time()


async def _opened(path: Path) -> Store:
    return await SqliteStore.open(path)


def test_ingest_runs_logs_store_on_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ingest() is _logs.store (chunked INSERT OR IGNORE) run on Database's writer thread."""
    threads: list[str] = []
    original = _logs.store

    def spy(*args: Any) -> int:
        threads.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(_logs, "store", spy)

    async def scenario() -> int:
        db = await _opened(tmp_path / "w.db")
        try:
            return await db.ingest("prj_a", batch(["a", "b"], ts=TS), 0)
        finally:
            await db.close()

    assert run(scenario()) == 2
    assert len(threads) == 1
    assert threads[0].startswith("banyan-writer")


def test_row_sqlite_refuses_is_rejected_by_index(tmp_path: Path) -> None:
    """A record whose text SQLite cannot bind (a lone surrogate) is rejected alone."""

    async def scenario() -> tuple[int, list[int], dict[str, int], list[str]]:
        db = await _opened(tmp_path / "r.db")
        try:
            sent = batch(["a", "b", "c"], ts=TS)
            sent.values[1 * 10 + 5] = "bad\ud800model"
            inserted = await db.ingest("prj_a", sent, 0)
            rejected = [r.index for r in sent.rejected]
            return inserted, rejected, await db.summary("prj_a"), await db.log_ids("prj_a")
        finally:
            await db.close()

    inserted, rejected, summary, ids = run(scenario())
    assert (inserted, rejected, ids) == (2, [1], ["a", "c"])
    assert (summary["stored"], summary["rejected"]) == (2, 1)


def test_prune_deletes_in_chunks_until_no_old_row_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prune() with chunks smaller than the old rows deletes them all, old rows interleaved."""
    monkeypatch.setattr(sqlite, "PRUNE_CHUNK", 3)
    ids = [f"r{i:02}" for i in range(20)]

    async def scenario() -> list[str]:
        db = await _opened(tmp_path / "p.db")
        try:
            for n, rid in enumerate(ids):
                await db.ingest("prj_a", batch([rid], ts=TS - 1000 if n % 3 else TS), 0)
            await db.prune(TS - 500)
            return await db.log_ids("prj_a")
        finally:
            await db.close()

    assert run(scenario()) == [rid for n, rid in enumerate(ids) if n % 3 == 0]
