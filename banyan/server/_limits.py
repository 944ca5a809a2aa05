"""What a worker admits: batches in flight, each project's share of them, body stalls.

A slow client must not hold the server (#14): a body that makes no progress
for ``body_timeout`` seconds is answered 408 (nginx's ``client_body_timeout``),
and one project may hold at most ``per_project`` of the worker's
``max_inflight`` ingest slots (a per-client ``limit_conn``), so a few stalled
connections with one key leave the other projects their share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from banyan.server._http import HTTPError

#: Environment variables through which `banyan serve` configures its workers.
INFLIGHT_ENV = "BANYAN_SERVER_MAX_INFLIGHT"
PER_PROJECT_ENV = "BANYAN_SERVER_MAX_INFLIGHT_PER_PROJECT"
BODY_TIMEOUT_ENV = "BANYAN_SERVER_BODY_TIMEOUT"

#: Ingest requests a worker processes at once.
MAX_INFLIGHT = 8
#: Of those, what one project may hold.
PER_PROJECT = 4
#: Seconds a request body may go without a byte arriving. The client's own
#: timeout is 10 s: a body stalled that long has been given up already.
BODY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Limits:
    """The admission settings of a worker."""

    max_inflight: int = MAX_INFLIGHT
    per_project: int = PER_PROJECT
    body_timeout: float = BODY_TIMEOUT

    def __post_init__(self) -> None:
        if self.max_inflight < 1 or self.per_project < 1 or not self.body_timeout > 0:
            raise ValueError(f"limits must be positive: {self}")

    def environ(self) -> dict[str, str]:
        """The settings as environment variables, for the worker processes."""
        return {
            INFLIGHT_ENV: str(self.max_inflight),
            PER_PROJECT_ENV: str(self.per_project),
            BODY_TIMEOUT_ENV: repr(self.body_timeout),
        }

    @classmethod
    def given(cls, **settings: Any) -> Limits:
        """The settings given (not None) over those of the environment."""
        chosen = {name: value for name, value in settings.items() if value is not None}
        return dataclasses.replace(cls.from_environ(), **chosen)

    @classmethod
    def from_environ(cls, env: Mapping[str, str] = os.environ) -> Limits:
        """The settings `banyan serve` handed down, the defaults for the rest."""
        return cls(
            int(env.get(INFLIGHT_ENV, MAX_INFLIGHT)),
            int(env.get(PER_PROJECT_ENV, PER_PROJECT)),
            float(env.get(BODY_TIMEOUT_ENV, BODY_TIMEOUT)),
        )


@dataclass
class Inflight:
    """The ingest slots of a worker, counted in total and per project."""

    limits: Limits = field(default_factory=Limits)
    total: int = 0
    projects: dict[str, int] = field(default_factory=dict)

    @contextlib.contextmanager
    def slot(self, project_id: str) -> Iterator[None]:
        """Hold a slot for the block: 503 when the worker is full, 429 when the project is."""
        held = self.projects.get(project_id, 0)
        if self.total >= self.limits.max_inflight:
            raise HTTPError(503, "server busy: too many batches in flight", {"Retry-After": "1"})
        if held >= self.limits.per_project:
            message = "too many batches of this project in flight"
            raise HTTPError(429, message, {"Retry-After": "1"})
        self.total += 1
        self.projects[project_id] = held + 1
        try:
            yield
        finally:
            self.total -= 1
            left = self.projects.pop(project_id) - 1
            if left:
                self.projects[project_id] = left
