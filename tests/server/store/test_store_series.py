"""Every engine: each variant's new subjects per UTC day, the page's "subjects over time" (#18)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from banyan._record import Score
from banyan.server import _ingest
from banyan.server.analysis import VariantAggregate
from banyan.server.store import Store
from banyan.server.store.series import FirstSeen

from ..helpers import record
from .conftest import StoreTarget
from .records import on_engine, with_store

if TYPE_CHECKING:
    from banyan.server.store.postgres import PostgresStore

DAY = 86_400.0
#: 2026-12-01 00:00 UTC, as days since the epoch and as seconds.
DAY0 = int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp() // DAY)
T0 = DAY0 * DAY


def _seen(rid: str, subject: str | None, ts: float, variant: str = "v0", **fields: Any) -> Any:
    where = {"experiment_id": "exp", "experiment_version_id": variant, **fields}
    return record(rid, ts=ts, sticky_value=subject, **where)


def _workload() -> _ingest.Decoded:
    return _ingest.to_rows([
        # dave's later record arrives first: his first day is the smallest ts, not arrival.
        _seen("d2", "dave", T0 + 3 * DAY + 60, "v1"), _seen("d1", "dave", T0 + DAY + 7200, "v1"),
        _seen("a1", "alice", T0 + 36_000), _seen("a2", "alice", T0 + 2 * DAY + 5),
        _seen("b1", "bob", T0 + 3 * DAY - 0.5), _seen("b2", "bob", T0 + 3 * DAY + 1),
        _seen("c1", "carol", T0 + DAY, "v1"),
        # Left out: no subject, another experiment, a subject seen only in scores.
        _seen("n1", None, T0), _seen("x1", "xavier", T0, experiment_id="other"),
        Score(id="s1", ts=T0, name="ok", value=True, experiment_id="exp",
              experiment_version_id="v1", sticky_value="erin"),
    ])  # fmt: skip


def test_subjects_count_on_their_first_utc_day_only(store: StoreTarget) -> None:
    """subject_series: per variant and UTC day of a subject's first record, the new subjects;
    as the results count them (records with a subject; scores alone do not count)."""

    async def scenario(db: Store) -> tuple[list[FirstSeen], list[VariantAggregate], list[Any]]:
        await db.ingest("prj", _workload(), 0)
        await db.ingest("other-prj", _ingest.to_rows([_seen("o1", "olga", T0)]), 0)
        found = await db.subject_series("prj", "exp")
        return found, await db.result_aggregates("prj", "exp"), await db.subject_series("prj", "no")

    found, aggregates, none = on_engine(store, scenario)
    assert found == [FirstSeen("v0", DAY0, 1), FirstSeen("v1", DAY0 + 1, 2),
                     FirstSeen("v0", DAY0 + 2, 1)]  # fmt: skip
    assert all(type(f.day) is int and type(f.subjects) is int for f in found)
    subjects = {a.variant_id: a.subjects for a in aggregates}
    assert {v: sum(f.subjects for f in found if f.variant_id == v) for v in subjects} == subjects
    assert none == []


def test_a_finite_ts_far_beyond_the_calendar_is_a_day_beyond_it(store: StoreTarget) -> None:
    """A ts of 1e300 (finite, so valid) gives a day after 9999-12-31 on each engine, not an
    error (the page draws it at the calendar's end: test_subjects_over_time)."""

    async def scenario(db: Store) -> list[FirstSeen]:
        await db.ingest("prj", _ingest.to_rows([_seen("z1", "zed", 1e300)]), 0)
        return await db.subject_series("prj", "exp")

    ((variant, day, subjects),) = on_engine(store, scenario)
    assert (variant, subjects) == ("v0", 1)
    assert day > (date.max - date(1970, 1, 1)).days


def test_series_settings_stay_in_their_transaction_on_postgres(pg_url: str) -> None:
    """subject_series's planner settings (JIT off, work_mem) do not reach the pool's next user."""
    shown = "SELECT current_setting('jit'), current_setting('work_mem')"

    async def scenario(db: PostgresStore) -> tuple[Any, Any, list[FirstSeen]]:
        before = await db._fetch(shown, ())
        await db.ingest("prj", _workload(), 0)
        found = await db.subject_series("prj", "exp")
        return before, await db._fetch(shown, ()), found

    # One connection: the series and both checks run on it.
    before, after, found = with_store(pg_url, scenario, max_size=1)
    assert after == before
    assert sum(f.subjects for f in found) == 4
