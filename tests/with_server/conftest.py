"""Fixtures for tests against the real reference server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from faultproxy import FaultProxy, running

import banyan
from banyan import _default

if TYPE_CHECKING:
    from serverproc import Server


@pytest.fixture
def server(server: Server, engine: str) -> Iterator[Server]:
    """The root fixture's fresh server, with the default logger shut down first.

    An open keep-alive connection would hold the server's graceful stop. ``engine`` is
    named here because pytest before 9.0 did not see it through this override
    (pytest-dev/pytest#13773) and ran these tests on SQLite only.
    """
    del engine
    yield server
    banyan.shutdown(timeout=5)


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    """A fault-injecting HTTP/1.1 proxy in front of a fresh server."""
    with running(server.base_url) as p:
        yield p


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("BANYAN_API_KEY", "BANYAN_BASE_URL", "BANYAN_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    yield
    banyan.shutdown(timeout=5)
    _default._reset()
