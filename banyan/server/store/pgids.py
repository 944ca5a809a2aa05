"""PostgreSQL: each record id stored once per project, whatever its ts (#17, protocol §3).

``logs`` is partitioned by ``ts``, and PostgreSQL enforces a unique index of a
partitioned table only with the partition key in it: ``(project_id, id, ts)``
lets a second record with a stored id but another ts in (a 1.0.1 retry the
server stamped anew, a reused ``record_id``). ``record_ids`` is one small
unpartitioned table keyed by ``(project_id, id)``: a batch claims its ids there
in the transaction that copies its rows, and only the rows whose id was new are
copied. A fresh batch claims them with one binary COPY, which fails the whole
transaction if an id is taken (no savepoint: it would cost two round trips a
batch); the caller then tries again, claiming with ``INSERT ... ON CONFLICT DO
NOTHING``. The unique index makes this exact across instances: a claim of an
id that another open transaction claimed waits for it to commit (a duplicate)
or roll back (stored here). Ids are claimed in sorted order, so two batches
sharing ids lock them in one order, and the rows come back in that order, which
the logs copy keeps. Retention deletes a claim with its row
(``pgschema.drop_before``).
"""

from __future__ import annotations

import operator
from typing import Any

from psycopg import AsyncConnection

from banyan.server.store import pgcopy

_COPY = b"COPY record_ids (project_id, id, ts) FROM STDIN (FORMAT BINARY)"
_TYPES = ["text", "text", "float8"]
_CLAIM = b"""
INSERT INTO record_ids (project_id, id, ts)
SELECT %s, id, ts FROM unnest(%s::text[], %s::float8[]) AS claimed(id, ts)
ON CONFLICT (project_id, id) DO NOTHING RETURNING id
"""
_ID = operator.itemgetter(1)
_CLAIMED = operator.itemgetter(0, 1, 2)

Row = tuple[Any, ...]


async def claim(conn: AsyncConnection[Any], rows: list[Row], *, fresh: bool) -> list[Row]:
    """Claim the ids of logs rows ``(project_id, id, ts, ...)`` of one project.

    Returns the rows to store: the first row of each id that no record of the
    project holds yet, in id order. ``fresh``: every id is expected new and
    claimed with a binary COPY (an INSERT from arrays costs ~3x the CPU, most of
    it dumping the arrays in Python), which raises UniqueViolation, failing the
    caller's transaction, if one is taken.
    """
    if not rows:
        return rows
    ordered = sorted(rows, key=_ID)  # stable: the first row of an id claims it
    if not fresh:
        return await _new_only(conn, ordered)
    await pgcopy.copy_rows(conn, _COPY, _TYPES, list(map(_CLAIMED, ordered)))
    return ordered


async def _new_only(conn: AsyncConnection[Any], ordered: list[Row]) -> list[Row]:
    """Claim the ids no one holds; the first row of each, in id order."""
    ids, times = [r[1] for r in ordered], [r[2] for r in ordered]
    cur = await conn.execute(_CLAIM, (ordered[0][0], ids, times))
    new = {r[0] for r in await cur.fetchall()}
    kept = []
    for row in ordered:
        if row[1] in new:
            new.discard(row[1])
            kept.append(row)
    return kept
