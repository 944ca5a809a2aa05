"""PostgreSQL: GET /api/v2/logs, one page at a time, by (ts, id).

Instances store at once, so there is no order stored to page by; a record's
(ts, id) is unique per project and the cursor is the last page's last pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from banyan.server._logs import FILTERS
from banyan.server.store import Page

_CONDITIONS = {name: sql.replace("?", "%s") for name, sql in FILTERS.items()}


def _after(cursor: str) -> tuple[float, str]:
    """The (ts, id) a cursor names; ValueError for one this engine did not make."""
    try:
        ts, rid = orjson.loads(cursor)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise ValueError(f"not a cursor: {cursor!r}") from None
    if not isinstance(ts, int | float) or not isinstance(rid, str):
        raise ValueError(f"not a cursor: {cursor!r}")
    return float(ts), rid


def page_query(project_id: str, page: Page) -> tuple[str, list[Any]]:
    """The statement and arguments of one page: an index range scan of logs_page_order."""
    sql = "".join(f" AND {_CONDITIONS[name]}" for name in page.filters)
    args: list[Any] = [project_id, *page.filters.values()]
    if page.cursor is not None:
        sql += " AND (ts, id) < (%s, %s)" if page.descending else " AND (ts, id) > (%s, %s)"
        args += _after(page.cursor)
    order = "DESC" if page.descending else "ASC"
    statement = (f"SELECT ts, id, record FROM logs WHERE project_id = %s{sql}"
                 f" ORDER BY ts {order}, id {order} LIMIT %s")  # fmt: skip
    return statement, [*args, page.limit]


class LogPages:
    """The ``logs_page`` method of PostgresStore; the engine supplies ``_fetch``."""

    async def _fetch(self, query: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def logs_page(self, project_id: str, page: Page) -> tuple[list[bytes], str | None]:
        """One page of records by (ts, id); the cursor is the last one's [ts, id] in JSON."""
        rows = await self._fetch(*page_query(project_id, page))
        more = len(rows) == page.limit
        return [bytes(r[2]) for r in rows], orjson.dumps(rows[-1][:2]).decode() if more else None
