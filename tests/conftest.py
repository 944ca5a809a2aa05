"""Fixtures shared by every test folder: the reference server as a real process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from serverproc import Server, start_server

from banyan import _warn

# CI must not fail on a draw no one can reproduce: fixed examples there, random ones locally.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="session")
def _prompt_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every client's on-disk prompt cache (and child processes') out of ~/.cache."""
    old = os.environ.get("BANYAN_CACHE_DIR")
    os.environ["BANYAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("prompt-cache"))
    yield
    if old is None:
        os.environ.pop("BANYAN_CACHE_DIR", None)
    else:
        os.environ["BANYAN_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _warnings_afresh() -> None:
    """Each test sees the once-per-process warnings (a wrong key, a certificate) anew."""
    _warn.forget()


@pytest.fixture(autouse=True)
def _spool_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spool root per test (children inherit it): no test replays another's records."""
    monkeypatch.setenv("BANYAN_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))


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
