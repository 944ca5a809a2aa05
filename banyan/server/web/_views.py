"""What a page shows, as the server hands it over: configuration, results, a time series.

A results provider (wired by the server) returns these; the pages read
nothing else. Times are seconds since the epoch, as the database stores them.
"""

from __future__ import annotations

import msgspec

from banyan.server.analysis import Results


class ExperimentInfo(msgspec.Struct, frozen=True):
    """An experiment's configuration and life cycle, beside its variants."""

    id: str
    name: str
    prompt: str
    branch: str
    status: str
    created_at: float
    started_at: float | None = None
    stopped_at: float | None = None
    sticky_key: str = "user_id"
    traffic_bp: int = 10_000
    variants: int = 0


class Point(msgspec.Struct, frozen=True):
    """Cumulative subjects per variant id at one time (a day, an hour)."""

    at: str
    subjects: dict[str, int]


class ExperimentView(msgspec.Struct, frozen=True):
    """Everything one results page shows."""

    project_name: str
    info: ExperimentInfo
    results: Results
    series: list[Point] = msgspec.field(default_factory=list)


class ProjectView(msgspec.Struct, frozen=True):
    """A project's experiments, for the list page."""

    id: str
    name: str
    experiments: list[ExperimentInfo]
