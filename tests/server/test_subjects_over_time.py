"""The "subjects over time" points of a results page, from the store's first-seen rows (#18)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from banyan.server._results import MAX_POINTS, points
from banyan.server.store.series import FirstSeen
from banyan.server.web import Point

from .helpers import schema_5_database, upgraded

#: 2026-12-01 as days since the epoch.
DEC1 = (date(2026, 12, 1) - date(1970, 1, 1)).days


def test_points_are_cumulative_per_utc_day_from_a_zero_the_day_before() -> None:
    """One point a day, gaps included, from a zero on the day before the first subject."""
    found = [FirstSeen("a", DEC1, 2), FirstSeen("b", DEC1 + 1, 1), FirstSeen("a", DEC1 + 3, 4)]
    series = points(found, ["a", "b"])
    assert [p.at for p in series] == ["2026-11-30", *(f"2026-12-0{d}" for d in range(1, 5))]
    assert [p.subjects for p in series] == [
        {"a": 0, "b": 0}, {"a": 2, "b": 0}, {"a": 2, "b": 1}, {"a": 2, "b": 1}, {"a": 6, "b": 1},
    ]  # fmt: skip


def test_no_subjects_no_points_and_unknown_variants_are_left_out() -> None:
    """No rows of the page's variants: no chart; rows of other variants (or none) are ignored."""
    assert points([], ["a"]) == []
    assert points([FirstSeen(None, DEC1, 3), FirstSeen("x", DEC1, 1)], ["a"]) == []
    (_, last) = points([FirstSeen("x", DEC1, 5), FirstSeen("a", DEC1, 1)], ["a"])
    assert last.subjects == {"a": 1}


def test_a_long_experiment_gets_at_most_max_points_ending_on_its_last_day() -> None:
    """Beyond MAX_POINTS days the points are every k days, the last on the last day, the
    first still a zero, and the final counts unchanged."""
    found = [FirstSeen("a", DEC1 + d, 1) for d in range(0, 400, 3)]
    series = points(found, ["a"])
    assert len(series) <= MAX_POINTS
    assert series[0].subjects == {"a": 0}
    assert series[-1].at == str(date.fromordinal(date(1970, 1, 1).toordinal() + DEC1 + 399))
    assert series[-1].subjects == {"a": len(found)}
    steps = {b - a for a, b in zip(_days(series), _days(series)[1:], strict=False)}
    assert len(steps) == 1


def test_days_beyond_the_calendar_are_drawn_at_its_ends() -> None:
    """A finite ts far from now (1e300, or before 1970) does not break the page: its subjects
    count at the calendar's last (or 1970's first) day."""
    series = points([FirstSeen("a", DEC1, 1), FirstSeen("a", 10**295, 1),
                     FirstSeen("a", -(10**9), 1)], ["a"])  # fmt: skip
    assert series[-1].at == "9999-12-31"
    assert series[-1].subjects == {"a": 3}
    assert len(series) <= MAX_POINTS


def test_schema_5_database_gains_ts_in_the_subject_index(tmp_path: Path) -> None:
    """A schema 5 SQLite database is upgraded in place: its logs keep their rows, and the
    per-subject index ends with ts, so the first-seen query reads the index alone."""
    with upgraded(tmp_path / "v5.db", schema_5_database) as conn:
        assert conn.execute("SELECT id, ts FROM logs").fetchall() == [("r", 0.0)]
        info = conn.execute("PRAGMA index_info(logs_experiment_subjects)").fetchall()
        assert [row[2] for row in info][-2:] == ["cost", "ts"]


def _days(series: list[Point]) -> list[int]:
    return [date.fromisoformat(p.at).toordinal() for p in series]
