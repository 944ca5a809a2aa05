"""Fixtures for real-process tests (fork)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

import banyan
from banyan import _default

if TYPE_CHECKING:
    from serverproc import Server


@pytest.fixture
def server(server: Server) -> Iterator[Server]:
    """The root fixture's fresh server, with the default logger shut down first."""
    yield server
    banyan.shutdown(timeout=5)
    _default._reset()
