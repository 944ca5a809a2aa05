"""Subjects over time (#18): per variant, the subjects first seen on each UTC day.

A subject counts as the results count it: from the logs (records with a
subject), on the UTC day of its earliest record by ``ts``; a subject seen only
in scores does not count. The inner query reduces each (variant, subject) to
its first day, the outer one counts per (variant, day), so the database holds
what the results' per-subject sums hold and returns one row per variant and day.
This module has the statement and the SQLite engine's call; pgseries.py the
PostgreSQL one.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

DAY_SECONDS = 86_400


class FirstSeen(NamedTuple):
    """How many of a variant's subjects had their first record on one UTC day."""

    variant_id: str | None
    #: Days since the epoch (1970-01-01 UTC).
    day: int
    subjects: int


def first_seen_query(day: str) -> str:
    """The statement, with ``day`` the SQL that turns ``MIN(ts)`` into a day number."""
    return (
        f"SELECT variant, day, COUNT(*) FROM ("
        f" SELECT experiment_version_id AS variant, {day} AS day FROM logs"
        " WHERE project_id = ? AND experiment_id = ? AND subject IS NOT NULL"
        " GROUP BY experiment_version_id, subject"
        ") AS first_seen GROUP BY variant, day ORDER BY day, variant NULLS FIRST"
    )


# CAST truncates toward zero, unlike PostgreSQL's floor: they differ only before 1970,
# which the page clamps to its first day anyway (_results.points).
_SQLITE = first_seen_query(f"CAST(MIN(ts) / {DAY_SECONDS} AS INTEGER)")


def rows(found: list[tuple[str | None, float, int]]) -> list[FirstSeen]:
    """The statement's rows as FirstSeen (PostgreSQL's days are floats: a ts of 1e300 is
    finite, so valid, and its day no bigint)."""
    return [FirstSeen(variant, int(day), int(n)) for variant, day, n in found]


def sqlite_series(conn: sqlite3.Connection, project_id: str, exp_id: str) -> list[FirstSeen]:
    """The new subjects per variant and day of one experiment, in day order."""
    return rows(conn.execute(_SQLITE, (project_id, exp_id)).fetchall())
