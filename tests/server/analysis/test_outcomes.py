"""Usage, cost and score aggregates (SQLite): per subject first, then per variant (#18)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from banyan.server import _db
from banyan.server.analysis import (
    MetricSummary,
    VariantAggregate,
    analyze,
    score_metrics,
    sqlite_outcomes,
    with_scores,
)
from banyan.server.analysis._outcomes import MAX_CATEGORIES, NUMBERS, score_args, scores_from

from .sim import experiment

_serial = itertools.count()


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    """The server's schema in memory."""
    conn = _db.connect(":memory:")
    _db.create_schema(conn)
    yield conn
    conn.close()


def logs(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """(id, variant, subject, input_tokens, output_tokens, cost) logs of experiment e."""
    conn.executemany(
        "INSERT INTO logs (project_id, id, ts, experiment_id, experiment_version_id, subject,"
        " input_tokens, output_tokens, cost, record) VALUES ('p', ?, 0, 'e', ?, ?, ?, ?, ?, x'')",
        rows,
    )


def scores(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """(name, kind, value, category, record_id, experiment_id, variant, subject) scores."""
    with _db.transaction(conn):
        _insert_scores(conn, rows)


def _insert_scores(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO scores (project_id, id, ts, name, kind, value, category, record_id,"
        " experiment_id, experiment_version_id, subject, record)"
        " VALUES ('p', ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, x'')",
        ((f"s{next(_serial)}", *row) for row in rows),
    )


def by_variant(aggs: list[VariantAggregate]) -> dict[str | None, dict[str, MetricSummary]]:
    return {a.variant_id: a.metrics for a in aggs}


def test_usage_and_cost_are_per_subject_means(conn: sqlite3.Connection) -> None:
    """Tokens and cost per record are averaged per subject first; NULL usage is left out."""
    logs(conn, [("r1", "v0", "alice", 10, 2, 0.5), ("r2", "v0", "alice", 30, None, 1.5),
                ("r3", "v0", "bob", 100, 4, None)])  # fmt: skip
    metrics = by_variant(sqlite_outcomes(conn, "p", "e"))["v0"]
    assert metrics["input_tokens"] == MetricSummary(2, 120.0, 20.0**2 + 100.0**2, 3)
    assert metrics["output_tokens"] == MetricSummary(2, 6.0, 4.0 + 16.0, 2)
    assert metrics["cost_usd"] == MetricSummary(1, 1.0, 1.0, 2)


def test_scores_attributed_by_subject_or_by_record(conn: sqlite3.Connection) -> None:
    """A score counts for its own experiment subject, or for the record it names."""
    logs(conn, [("r1", "v1", "carol", None, None, None), ("x", "v1", None, None, None, None)])
    scores(conn, [
        ("rating", "number", 4.0, None, None, "e", "v0", "alice"),
        ("rating", "number", 2.0, None, None, "e", "v0", "alice"),
        ("rating", "number", 5.0, None, None, "e", "v0", "bob"),
        ("rating", "number", 1.0, None, "r1", None, None, None),  # carol's, through r1
        ("rating", "number", 9.0, None, "x", None, None, None),  # a record without subject
        ("rating", "number", 9.0, None, "gone", None, None, None),  # no such record
        ("rating", "number", 9.0, None, None, "other", "v0", "alice"),  # another experiment
    ])  # fmt: skip
    found = score_metrics(conn, "p", "e")
    # alice's mean is 3, bob's 5.
    assert found["v0"]["score:rating"] == MetricSummary(2, 8.0, 34.0, 3)
    assert found["v1"]["score:rating"] == MetricSummary(1, 1.0, 1.0, 1)


def test_a_boolean_score_is_a_proportion_of_subjects(conn: sqlite3.Connection) -> None:
    """A subject converted when any of its boolean scores is true."""
    scores(conn, [
        ("accepted", "boolean", 0.0, None, None, "e", "v0", "alice"),
        ("accepted", "boolean", 1.0, None, None, "e", "v0", "alice"),
        ("accepted", "boolean", 0.0, None, None, "e", "v0", "bob"),
    ])  # fmt: skip
    found = score_metrics(conn, "p", "e")["v0"]["score:accepted"]
    assert found == MetricSummary(2, 1.0, 1.0, 3, "proportion")


def test_a_name_given_as_number_and_boolean_is_two_metrics(conn: sqlite3.Connection) -> None:
    """One name with two kinds is reported per kind, so neither is mistaken for the other."""
    scores(conn, [("mixed", "boolean", 1.0, None, None, "e", "v0", "a"),
                  ("mixed", "number", 7.0, None, None, "e", "v1", "b")])  # fmt: skip
    found = score_metrics(conn, "p", "e")
    assert found["v0"]["score:mixed:boolean"].kind == "proportion"
    assert found["v1"]["score:mixed:number"].kind == "mean"


def test_categories_are_proportions_of_the_subjects_who_rated(conn: sqlite3.Connection) -> None:
    """Per category: subjects who gave it over subjects who gave the score any category."""
    scores(conn, [
        ("verdict", "category", None, "good", None, "e", "v0", "alice"),
        ("verdict", "category", None, "bad", None, "e", "v0", "alice"),
        ("verdict", "category", None, "bad", None, "e", "v0", "bob"),
        ("verdict", "category", None, "good", None, "e", "v1", "carol"),
    ])  # fmt: skip
    found = score_metrics(conn, "p", "e")
    assert found["v0"]["score:verdict=good"] == MetricSummary(2, 1.0, 1.0, 1, "proportion")
    assert found["v0"]["score:verdict=bad"] == MetricSummary(2, 2.0, 2.0, 2, "proportion")
    # carol never said "bad": 0 of 1, not absent.
    assert found["v1"]["score:verdict=bad"] == MetricSummary(1, 0.0, 0.0, 0, "proportion")


def test_only_the_most_given_categories_are_reported(conn: sqlite3.Connection) -> None:
    """A score with many categories reports the MAX_CATEGORIES given by most subjects."""
    rows = [("tag", "category", None, f"c{i:03}", None, "e", "v0", f"u{j}")
            for i in range(MAX_CATEGORIES + 5) for j in range(i + 1)]  # fmt: skip
    scores(conn, rows)
    names = set(score_metrics(conn, "p", "e")["v0"])
    assert len(names) == MAX_CATEGORIES
    assert "score:tag=c024" in names
    assert "score:tag=c000" not in names


def test_a_variant_seen_only_in_scores_gets_an_aggregate() -> None:
    """with_scores adds score metrics to each variant, and a variant for scores alone."""
    summary = MetricSummary(1, 1.0, 1.0, 1, "proportion")
    merged = with_scores([VariantAggregate("v0", 3, 5)], {"v0": {"score:a": summary},
                                                        "v9": {"score:a": summary}})  # fmt: skip
    assert [(a.variant_id, a.subjects, list(a.metrics)) for a in merged] == [
        ("v0", 3, ["score:a"]), ("v9", 0, ["score:a"])]  # fmt: skip


def _scores_of(rng: np.random.Generator, exp: str, subjects: int, p: float) -> list[Any]:
    """1 or 2 boolean scores per subject of each arm of ``exp``, each true with ``p``."""
    rows = []
    for arm, subject in itertools.product(("v0", "v1"), range(subjects)):
        for value in rng.random(rng.integers(1, 3)) < p:
            rows.append(("accepted", "boolean", float(value), None, None, exp, arm, f"u{subject}"))
    return rows


# About 10 s of CPU (1,000 experiments, each its own statement); a shared machine can
# stretch that past the suite's 120 s default.
@pytest.mark.timeout(600)
def test_aa_experiments_on_a_boolean_score_flag_five_percent(conn: sqlite3.Connection) -> None:
    """1,000 A/A experiments of boolean scores, through the SQL: significant in 5 % +- 1.5 %."""
    rng = np.random.default_rng(1818)
    runs = 1000
    for run in range(runs):
        scores(conn, _scores_of(rng, f"e{run}", 100, 0.25))
    flagged = 0
    for run in range(runs):
        # The statement of numbers and booleans only: no category was sent.
        sums = scores_from(conn.execute(NUMBERS, score_args("p", f"e{run}")), [], [])
        found = analyze(experiment(5000, 5000), with_scores([], sums)).variants[1]
        flagged += found.versus_control["score:accepted"].significant
    assert 0.035 <= flagged / runs <= 0.065, flagged


def test_score_differences_match_scipy_on_fixed_data(conn: sqlite3.Connection) -> None:
    """Per-subject score values through the SQL give scipy's Welch and chi-square p-values."""
    rng = np.random.default_rng(7)
    rows: list[tuple[Any, ...]] = []
    means: dict[str, list[float]] = {"v0": [], "v1": []}
    converted: dict[str, list[bool]] = {"v0": [], "v1": []}
    for arm, subject in itertools.product(("v0", "v1"), range(60)):
        ratings = rng.normal(3.0 if arm == "v0" else 3.4, 1.0, rng.integers(1, 5))
        flags = rng.random(len(ratings)) < (0.3 if arm == "v0" else 0.45)
        means[arm].append(float(ratings.mean()))
        converted[arm].append(bool(flags.any()))
        where = (None, None, "e", arm, f"{arm}-{subject}")
        rows += [("rating", "number", float(r), *where) for r in ratings]
        rows += [("ok", "boolean", float(f), *where) for f in flags]
    scores(conn, rows)
    result = analyze(experiment(5000, 5000), with_scores([], score_metrics(conn, "p", "e")))
    versus = result.variants[1].versus_control
    welch = stats.ttest_ind(means["v1"], means["v0"], equal_var=False)
    assert versus["score:rating"].p_value == pytest.approx(welch.pvalue, rel=1e-9)
    table = [[sum(converted[a]), len(converted[a]) - sum(converted[a])] for a in ("v0", "v1")]
    chi2 = stats.chi2_contingency(table, correction=False)
    assert versus["score:ok"].p_value == pytest.approx(chi2.pvalue, rel=1e-9)
