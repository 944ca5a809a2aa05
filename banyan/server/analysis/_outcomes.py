"""Outcome aggregates: token usage and cost per record, and scores, per subject first.

Written once in SQLite's SQL; ``postgres()`` turns a statement into PostgreSQL's
(``%s`` placeholders, ``SUM`` for ``TOTAL``, which differs only on empty input).
Every statement groups per (variant, subject) in an inner query and sums per
variant in the outer one, so memory is bounded by subjects, never by records.

Scores reach an experiment two ways: with their own ``experiment_id`` (from the
``prompt_data`` of the scored call), or through the log record their
``record_id`` names, whose experiment, variant and subject they take.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from banyan.server.analysis._inputs import MetricKind, MetricSummary, VariantAggregate
from banyan.server.analysis._sqlite import LATENCY, Metric, sqlite_aggregates

#: Per record, from the logs' usage columns.
USAGE = (
    Metric("input_tokens", "input_tokens"),
    Metric("output_tokens", "output_tokens"),
    Metric("cost_usd", "cost"),
)
#: What the results show per record: latency, tokens and cost.
RECORD_METRICS = (LATENCY, *USAGE)
#: Most categories reported per categorical score (those given by the most subjects).
MAX_CATEGORIES = 20
#: A Metric's name for a score: ``score:NAME``, and ``score:NAME=CATEGORY`` per category.
SCORE_PREFIX = "score:"

#: (variant, subject, name, kind, value, category) of the experiment's scores; binds
#: project, experiment, project, experiment.
_SCORED = """
SELECT experiment_version_id AS variant, subject, name, kind, value, category FROM scores
WHERE project_id = ? AND experiment_id = ? AND subject IS NOT NULL
UNION ALL
SELECT l.experiment_version_id, l.subject, s.name, s.kind, s.value, s.category
FROM scores s JOIN logs l ON l.project_id = s.project_id AND l.id = s.record_id
WHERE s.project_id = ? AND s.experiment_id IS NULL AND l.experiment_id = ?
    AND l.subject IS NOT NULL
"""
_ANY = "MAX(CASE WHEN value != 0 THEN 1 ELSE 0 END)"
#: Per (variant, subject, name, kind) of numbers and booleans: count, sum and any-true, from
#: each way of attribution apart. The first groups in the order of its covering index
#: (streamed, no sort); only these partial rows, about one per subject, are sorted after.
_PARTS = f"""
SELECT experiment_version_id AS variant, subject, name, kind, COUNT(*) AS r,
       TOTAL(value) AS total, {_ANY} AS hit
FROM scores WHERE project_id = ? AND experiment_id = ? AND subject IS NOT NULL
    AND kind != 'category'
GROUP BY experiment_version_id, subject, name, kind
UNION ALL
SELECT l.experiment_version_id, l.subject, s.name, s.kind, COUNT(*), TOTAL(s.value),
       {_ANY.replace("value", "s.value")}
FROM scores s JOIN logs l ON l.project_id = s.project_id AND l.id = s.record_id
WHERE s.project_id = ? AND s.experiment_id IS NULL AND s.kind != 'category'
    AND l.experiment_id = ? AND l.subject IS NOT NULL
GROUP BY l.experiment_version_id, l.subject, s.name, s.kind
"""
#: Numbers (mean per subject) and booleans (1 when any is true), per variant and name.
NUMBERS = f"""
SELECT variant, name, kind, COUNT(*), TOTAL(m), TOTAL(m * m), TOTAL(r) FROM (
    SELECT variant, name, kind, SUM(r) AS r,
           CASE kind WHEN 'boolean' THEN MAX(hit) ELSE TOTAL(total) / SUM(r) END AS m
    FROM ({_PARTS}) AS parts GROUP BY variant, name, kind, subject
) AS per_subject GROUP BY variant, name, kind
"""
#: Per variant and categorical score: the subjects that gave any category.
RATERS = f"""
SELECT variant, name, COUNT(*) FROM (
    SELECT variant, name FROM ({_SCORED}) AS scored WHERE kind = 'category'
    GROUP BY variant, name, subject
) AS per_subject GROUP BY variant, name
"""
#: Per variant, categorical score and category: the subjects that gave it, and how often.
CATEGORIES = f"""
SELECT variant, name, category, COUNT(*), TOTAL(r) FROM (
    SELECT variant, name, category, COUNT(*) AS r FROM ({_SCORED}) AS scored
    WHERE kind = 'category' GROUP BY variant, name, category, subject
) AS per_subject GROUP BY variant, name, category
"""

#: The statements whose rows ``scores_from`` reads, in its argument order; each binds
#: ``score_args(project_id, exp_id)``.
SCORE_QUERIES = (NUMBERS, RATERS, CATEGORIES)
#: Rows of one statement.
Rows = Iterable[Sequence[Any]]
#: Per variant id, per metric name, its summary.
ByVariant = dict[str | None, dict[str, MetricSummary]]


def postgres(statement: str) -> str:
    """A statement of this package in PostgreSQL's dialect."""
    return statement.replace("?", "%s").replace("TOTAL(", "SUM(")


def score_args(project_id: str, exp_id: str) -> tuple[str, ...]:
    """The arguments of each of SCORE_QUERIES."""
    return (project_id, exp_id) * 2


def scores_from(numbers: Rows, raters: Rows, categories: Rows) -> ByVariant:
    """Every score of the experiment as metrics per variant, from SCORE_QUERIES' rows."""
    found: ByVariant = defaultdict(dict)
    _numbers(found, numbers)
    _categories(found, raters, categories)
    return found


def score_metrics(conn: sqlite3.Connection, project_id: str, exp_id: str) -> ByVariant:
    """Every score of the experiment as metrics per variant (see docs/statistics.md)."""
    args = score_args(project_id, exp_id)
    return scores_from(*(conn.execute(query, args) for query in SCORE_QUERIES))


def _summary(n: Any, total: Any, squares: Any, records: Any, kind: MetricKind) -> MetricSummary:
    return MetricSummary(int(n), float(total or 0), float(squares or 0), int(records or 0), kind)


def _numbers(found: ByVariant, rows: Rows) -> None:
    rows = list(rows)
    kinds: dict[str, set[str]] = defaultdict(set)
    for _, name, kind, *_ in rows:
        kinds[name].add(kind)
    for variant, name, kind, n, total, squares, records in rows:
        # A name given as numbers and as booleans: one metric per kind, named apart.
        label = SCORE_PREFIX + name + (f":{kind}" if len(kinds[name]) > 1 else "")
        metric: MetricKind = "proportion" if kind == "boolean" else "mean"
        found[variant][label] = _summary(n, total, squares, records, metric)


def _categories(found: ByVariant, raters: Rows, rows: Rows) -> None:
    """One proportion per category: of the variant's subjects who gave that score any
    category, those who gave this one (0 where none did)."""
    rated = {(variant, name): int(n) for variant, name, n in raters}
    given: dict[tuple[str, str], dict[str, tuple[int, int]]] = defaultdict(dict)
    reach: dict[tuple[str, str], int] = defaultdict(int)
    for variant, name, category, n, records in rows:
        given[variant, name][category] = (int(n), int(records or 0))
        reach[name, category] += int(n)
    top: dict[str, list[str]] = defaultdict(list)
    for name, category in sorted(reach, key=lambda k: (-reach[k], k)):
        if len(top[name]) < MAX_CATEGORIES:
            top[name].append(category)
    for (variant, name), n in rated.items():
        for category in top[name]:
            k, records = given[variant, name].get(category, (0, 0))
            label = f"{SCORE_PREFIX}{name}={category}"
            found[variant][label] = _summary(n, k, k, records, "proportion")


def with_scores(aggregates: list[VariantAggregate], scores: ByVariant) -> list[VariantAggregate]:
    """``aggregates`` with each variant's score metrics added (a variant seen only in scores
    gets an aggregate of its own, with no subjects or records)."""
    out = [
        msgspec.structs.replace(a, metrics={**a.metrics, **scores.get(a.variant_id, {})})
        for a in aggregates
    ]
    seen = {a.variant_id for a in aggregates}
    out += [VariantAggregate(v, 0, 0, dict(m)) for v, m in scores.items() if v not in seen]
    return out


def sqlite_outcomes(
    conn: sqlite3.Connection, project_id: str, exp_id: str
) -> list[VariantAggregate]:
    """One experiment's aggregates from SQLite: latency, usage and cost, and its scores."""
    aggregates = sqlite_aggregates(conn, project_id, exp_id, RECORD_METRICS)
    return with_scores(aggregates, score_metrics(conn, project_id, exp_id))
