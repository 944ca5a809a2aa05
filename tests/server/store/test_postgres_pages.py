"""PostgresStore: a page of GET /api/v2/logs is an index range scan, wherever it starts."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest

from banyan.server.store import Page
from banyan.server.store.pgpages import page_query
from banyan.server.store.postgres import PostgresStore

from .records import with_store

ROWS = 100_000
#: From today's first second (UTC): the days whose partitions the store creates at open.
START = time.time() // 86_400 * 86_400
#: Two days of records, one every 1.728 s, each record's blob its id.
_FILL = """
INSERT INTO logs (project_id, id, ts, prompt_name, record)
SELECT p, 'r' || n, %s + n * 1.728, 'p' || (n %% 3), convert_to('r' || n, 'UTF8')
FROM generate_series(1, %s) AS n, unnest(ARRAY['prj_a', 'prj_b']) AS p
"""


def _nodes(plan: dict[str, Any]) -> list[str]:
    return [plan["Node Type"]] + [n for child in plan.get("Plans", []) for n in _nodes(child)]


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("filters", [{}, {"prompt": "p1"}])
def test_a_page_in_the_middle_is_an_index_scan(
    pg_url: str, descending: bool, filters: dict[str, Any]
) -> None:
    """A page after a cursor halfway through 100k rows reads an index in order: no sort, no
    sequential scan, and it holds the records that follow the cursor."""
    middle = 50_000
    cursor = json.dumps([START + middle * 1.728, f"r{middle}"])
    page = Page(filters=filters, cursor=cursor, limit=100, descending=descending)

    async def scenario(store: PostgresStore) -> tuple[list[str], list[bytes]]:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            await conn.execute(_FILL.encode(), (START, ROWS))
            await conn.execute("ANALYZE logs")
            statement, args = page_query("prj_a", page)
            cur = await conn.execute(f"EXPLAIN (FORMAT JSON) {statement}".encode(), args)
            (plan,) = (await cur.fetchone() or [[]])[0]
        records, _ = await store.logs_page("prj_a", page)
        return _nodes(plan["Plan"]), records

    nodes, records = with_store(pg_url, scenario)
    assert "Sort" not in nodes, nodes
    assert "Seq Scan" not in nodes, nodes
    assert {"Index Scan", "Index Only Scan"} & set(nodes), nodes
    step = -1 if descending else 1
    wanted = [n for n in range(middle + step, middle + step * 400, step)
              if not filters or n % 3 == 1][:100]  # fmt: skip
    assert records == [f"r{n}".encode() for n in wanted]
