"""PostgreSQL: projects, keys, prompts and experiments (filled in below)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection


class Catalog:
    """The management half of PostgresStore; the engine supplies connections."""

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        raise NotImplementedError

    async def _fetch(self, query: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError
