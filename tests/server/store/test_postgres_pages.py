"""PostgresStore: a page of GET /api/v2/logs is an index range scan, wherever it starts."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

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


#: (descending, filters) of the pages read from the middle.
CASES = [(False, {}), (True, {}), (False, {"prompt": "p1"}), (True, {"prompt": "p1"})]


def test_a_page_in_the_middle_is_an_index_scan(pg_url: str) -> None:
    """A page after a cursor halfway through 100k rows reads an index in order, either way,
    filtered or not: no sort, no sequential scan, and it holds the records after the cursor."""
    middle = 50_000
    cursor = json.dumps([START + middle * 1.728, f"r{middle}"])
    pages = [Page(filters=f, cursor=cursor, limit=100, descending=d) for d, f in CASES]

    async def scenario(store: PostgresStore) -> list[tuple[list[str], list[bytes]]]:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            await conn.execute(_FILL.encode(), (START, ROWS))
            await conn.execute("ANALYZE logs")
            read = []
            for page in pages:
                statement, args = page_query("prj_a", page)
                cur = await conn.execute(f"EXPLAIN (FORMAT JSON) {statement}".encode(), args)
                (plan,) = (await cur.fetchone() or [[]])[0]
                read.append((_nodes(plan["Plan"]), (await store.logs_page("prj_a", page))[0]))
        return read

    for (descending, filters), (nodes, records) in zip(
        CASES, with_store(pg_url, scenario), strict=True
    ):
        assert "Sort" not in nodes, (descending, filters, nodes)
        assert "Seq Scan" not in nodes, (descending, filters, nodes)
        assert {"Index Scan", "Index Only Scan"} & set(nodes), (descending, filters, nodes)
        step = -1 if descending else 1
        wanted = [n for n in range(middle + step, middle + step * 400, step)
                  if not filters or n % 3 == 1][:100]  # fmt: skip
        assert records == [f"r{n}".encode() for n in wanted], (descending, filters)
