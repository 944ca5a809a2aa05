"""`banyan serve` keeps its secrets (#14, item 8): the key out of ps, the database private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import TEST_KEY, Server, start_server

from banyan._cli import main

from .helpers import call


def _check_key_hidden(server: Server) -> None:
    """The key works and appears neither in the command line nor in the output."""
    assert call(server, "GET", "/api/auth/validate").status_code == 200
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    assert TEST_KEY.encode() not in cmdline
    assert TEST_KEY not in server.log.read_text()


def test_api_key_file_gives_the_bootstrap_key_out_of_sight(tmp_path: Path) -> None:
    """--api-key-file: its key (trailing newline ignored) is the admin key; not in ps or output."""
    key_file = tmp_path / "key"
    key_file.write_text(TEST_KEY + "\n")
    srv = start_server(tmp_path, "--api-key-file", str(key_file), key_arg=False)
    try:
        _check_key_hidden(srv)
    finally:
        srv.stop()


def test_api_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BANYAN_SERVE_API_KEY gives the bootstrap key when no option does."""
    monkeypatch.setenv("BANYAN_SERVE_API_KEY", TEST_KEY)
    srv = start_server(tmp_path, key_arg=False)
    try:
        _check_key_hidden(srv)
    finally:
        srv.stop()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """The arguments `banyan serve` would have started the server with."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr("banyan.server.serve", lambda **kw: calls.append(kw))
    return calls


def test_api_key_and_api_key_file_together_exit_2(
    tmp_path: Path, started: list[dict[str, object]]
) -> None:
    """Two sources of the key on one command line are a usage error, not a silent choice."""
    key_file = tmp_path / "key"
    key_file.write_text(TEST_KEY)
    argv = ["serve", "--api-key", TEST_KEY, "--api-key-file", str(key_file)]
    assert main(argv) == 2
    assert started == []


@pytest.mark.parametrize("content", ["", "not-a-key\n"])
def test_api_key_file_without_a_key_exits_2(
    tmp_path: Path, started: list[dict[str, object]], content: str
) -> None:
    """An empty key file, or one whose text is not a psk_ key, stops `banyan serve` (exit 2)."""
    key_file = tmp_path / "key"
    key_file.write_text(content)
    assert main(["serve", "--api-key-file", str(key_file)]) == 2
    assert main(["serve", "--api-key-file", str(tmp_path / "missing")]) == 2
    assert started == []


def test_option_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch, started: list[dict[str, object]]
) -> None:
    """--api-key wins over BANYAN_SERVE_API_KEY (an option is the more specific setting)."""
    monkeypatch.setenv("BANYAN_SERVE_API_KEY", "psk_from_environment")
    assert main(["serve", "--api-key", TEST_KEY]) == 0
    assert started[0]["api_key"] == TEST_KEY


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0 for the test: files get exactly the mode they are created with."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
def test_new_database_and_its_wal_are_private(tmp_path: Path) -> None:
    """A database `banyan serve` creates, its -wal and its -shm are 0600, even with umask 0."""
    srv = start_server(tmp_path)
    try:
        assert call(srv, "GET", "/api/auth/validate").status_code == 200
        for path in (srv.db, Path(f"{srv.db}-wal"), Path(f"{srv.db}-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        srv.stop()
