"""Fixtures shared by every test folder: the reference server as a real process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import Server, start_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh reference server (empty SQLite database) for one test."""
    srv = start_server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One reference server for tests that only read or use unique names."""
    srv = start_server(tmp_path_factory.mktemp("shared-server"))
    try:
        yield srv
    finally:
        srv.stop()
