"""Batches as the ingest path hands them to a store, and a way to run a coroutine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from banyan.server import _ingest
from banyan.server.store import Store

from ..helpers import record

if TYPE_CHECKING:
    from banyan.server.store.postgres import PostgresStore

    from .conftest import StoreTarget

T = TypeVar("T")
S = TypeVar("S", bound=Store)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one scenario on a fresh event loop."""
    return asyncio.run(coro)


def batch(ids: Iterable[str], **fields: Any) -> _ingest.Decoded:
    """The decoded batch of one valid record per id (``fields`` override defaults)."""
    return _ingest.to_rows([record(rid, **fields) for rid in ids])


def stored_ids(url: str, project_id: str) -> list[str]:
    """The record ids in the logs table, read straight from the database."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id FROM logs WHERE project_id = %s", (project_id,))
        return [r[0] for r in rows]


def scalar(url: str, query: str) -> Any:
    """The first column of the first row of ``query``."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(query.encode()).fetchone()
        return None if row is None else row[0]


async def opened(url: str, **options: Any) -> PostgresStore:
    """A store on ``url`` (migrated)."""
    from banyan.server.store.postgres import PostgresStore

    return await PostgresStore.open(url, **options)


def on_engine(target: StoreTarget, scenario: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``scenario(store)`` on a store of ``target``'s engine, closed afterwards."""
    return _closed_after(target.open(), scenario)


def with_store(url: str, scenario: Callable[[PostgresStore], Awaitable[T]], **options: Any) -> T:
    """Run ``scenario(store)`` on a PostgresStore opened on ``url`` (with ``options``),
    closed afterwards."""
    return _closed_after(opened(url, **options), scenario)


def _closed_after(opening: Awaitable[S], scenario: Callable[[S], Awaitable[T]]) -> T:
    async def wrapped() -> T:
        store = await opening
        try:
            return await scenario(store)
        finally:
            await store.close()

    return run(wrapped())
