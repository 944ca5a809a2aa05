"""PostgreSQL: subjects over time, the statement of ``store.series`` in its dialect."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from banyan.server.analysis._outcomes import postgres
from banyan.server.store.pgcatalog import Conn, _all
from banyan.server.store.pgresults import _TUNED, _set
from banyan.server.store.series import DAY_SECONDS, FirstSeen, first_seen_query, rows

_FIRST_SEEN = postgres(first_seen_query(f"floor(MIN(ts) / {DAY_SECONDS})"))


class Series:
    """The ``subject_series`` method of PostgresStore; the engine supplies connections."""

    def _connection(self) -> AbstractAsyncContextManager[Conn]:
        raise NotImplementedError

    async def subject_series(self, project_id: str, exp_id: str) -> list[FirstSeen]:
        """The new subjects per variant and UTC day of one experiment, in day order."""
        async with self._connection() as conn:
            # The results' settings, for the same reasons: JIT, and a 100,000-subject hash.
            await _set(conn, _TUNED)
            return rows(await _all(conn, _FIRST_SEEN, (project_id, exp_id)))
