"""The SQLite reference query: per-subject aggregation over the server's logs table."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable

import numpy as np

from banyan.server import _stats
from banyan.server.analysis import LATENCY, Metric, analyze, sqlite_aggregates

from .sim import experiment

#: A row of the test table: variant, subject, duration_ms, accepted.
Row = tuple[str, str | None, float | None, int | None]
ACCEPTED = Metric("accepted", "accepted", "proportion")


def insert(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
    """Store logs of experiment exp_sim in project p."""
    serial = itertools.count()
    conn.executemany(
        "INSERT INTO logs (project_id, id, ts, experiment_id, experiment_version_id, subject,"
        " duration_ms, accepted, record) VALUES ('p', ?, 0, 'exp_sim', ?, ?, ?, ?, x'')",
        ((f"r{next(serial)}", *row) for row in rows),
    )


def test_sums_are_over_per_subject_means_and_conversions(conn: sqlite3.Connection) -> None:
    """Sums, counts and conversions are per subject; NULL values and subjects are left out."""
    insert(conn, [
        ("v0", "alice", 10.0, 0), ("v0", "alice", 30.0, 1), ("v0", "bob", 40.0, None),
        ("v0", "carol", None, 0), ("v0", None, 99.0, 1),
    ])  # fmt: skip
    (agg,) = sqlite_aggregates(conn, "p", "exp_sim", (LATENCY, ACCEPTED))
    assert (agg.variant_id, agg.subjects, agg.records) == ("v0", 3, 4)
    latency, accepted = agg.metrics["latency_ms"], agg.metrics["accepted"]
    # alice's mean is 20, bob's 40; carol has no latency.
    assert (latency.subjects, latency.sum, latency.sum_squares) == (2, 60.0, 2000.0)
    assert latency.records == 3
    # alice converted, carol did not, bob has no score.
    assert (accepted.subjects, accepted.sum, accepted.kind) == (2, 1.0, "proportion")


def test_latency_percentiles_are_nearest_rank_over_records(conn: sqlite3.Connection) -> None:
    """p50/p95/p99 pass through as the server's nearest-rank percentiles of records."""
    values = [float(v) for v in np.random.default_rng(3).permutation(1000)]
    insert(conn, [("v0", f"s{i % 7}", v, None) for i, v in enumerate(values)])
    (agg,) = sqlite_aggregates(conn, "p", "exp_sim")
    ordered = sorted(values)
    expected = [_stats.percentile(ordered, p) for p in (50, 95, 99)]
    assert agg.latency is not None
    assert [agg.latency.p50_ms, agg.latency.p95_ms, agg.latency.p99_ms] == expected


def _aa_with_heavy_user(conn: sqlite3.Connection) -> None:
    rng = np.random.default_rng(1809)
    rows: list[Row] = []
    for variant, subject in itertools.product(("v0", "v1"), range(200)):
        base = rng.normal(100.0, 15.0)
        noisy = base + rng.normal(0, 10, 3)
        rows += [(variant, f"{variant}-{subject}", float(x), None) for x in noisy]
    # One subject of v1 sends 10,000 slow records: a bot, a batch job, a power user.
    rows += [("v1", "heavy", float(x), None) for x in rng.normal(200.0, 10.0, 10_000)]
    insert(conn, rows)


def test_a_heavy_user_does_not_fake_significance(conn: sqlite3.Connection) -> None:
    """A/A with one subject of 10,000 records: not significant per subject, as per record."""
    _aa_with_heavy_user(conn)
    per_subject = sqlite_aggregates(conn, "p", "exp_sim")
    per_record = sqlite_aggregates(conn, "p", "exp_sim", subject="id")
    exp = experiment(5000, 5000)
    found = analyze(exp, per_subject).variants[1]
    assert (found.subjects, found.records) == (201, 10_600)
    assert not found.versus_control["latency_ms"].significant
    # Counting records as subjects, the same data is "significant" (and an SRM).
    naive = analyze(exp, per_record)
    assert naive.variants[1].versus_control["latency_ms"].significant
    assert naive.srm.flagged
