"""PostgreSQL: the 1.0.1 endpoint's Idempotency-Key, answered once across instances.

A transaction-level advisory lock on (project, key) makes two instances that
receive the same key at once take turns: the second finds the first's answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from banyan.server._idempotency import WINDOW, Answer, Remembered
from banyan.server._ingest import Decoded
from banyan.server.store.pgcatalog import Conn, _one

_LOCK = b"SELECT pg_advisory_xact_lock(hashtextextended(%s || ' ' || %s, 0))"
_REPLAY = """
SELECT fingerprint, status, response FROM idempotency_keys
WHERE project_id = %s AND key = %s AND created_at >= %s
"""
_REMEMBER = b"""
INSERT INTO idempotency_keys VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (project_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
    status = excluded.status, response = excluded.response, created_at = excluded.created_at
"""


class Idempotency:
    """The ``ingest_once`` method of PostgresStore; the engine supplies the rest."""

    def _connection(self) -> AbstractAsyncContextManager[Conn]:
        raise NotImplementedError

    async def _stored(self, conn: Conn, project_id: str, batch: Decoded, single: int) -> int:
        raise NotImplementedError

    async def ingest_once(
        self, project_id: str, batch: Decoded, key: str, fingerprint: str,
        answer: Callable[[int], Answer],
    ) -> Remembered:  # fmt: skip
        """Ingest one record under an Idempotency-Key, once per key and window."""
        now = time.time()
        async with self._connection() as conn:
            await conn.execute(_LOCK, (project_id, key))
            row = await _one(conn, _REPLAY, (project_id, key, now - WINDOW))
            if row is not None:
                return row[0], (int(row[1]), bytes(row[2]))
            kept = fingerprint, answer(await self._stored(conn, project_id, batch, 1))
            await conn.execute(
                b"DELETE FROM idempotency_keys WHERE created_at < %s", (now - WINDOW,)
            )
            await conn.execute(_REMEMBER, (project_id, key, fingerprint, *kept[1], now))
            return kept
