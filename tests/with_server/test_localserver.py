"""``banyan._localserver.start``: a port taken before the server binds it is no failed start."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from banyan import _localserver


@pytest.fixture
def occupant() -> Iterator[socket.socket]:
    """A listening socket on a loopback port that never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def _served_on(tmp: Path, port: int | None = None) -> int:
    """The port of a started server, once it answered; the server is stopped."""
    server = _localserver.start(tmp, port=port)
    try:
        assert server.get("/healthz").is_success
        return server.port
    finally:
        server.stop()


def test_a_first_start_whose_port_is_taken_moves_to_a_fresh_port(
    tmp_path: Path, occupant: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port() hands out a port someone took before the bind: start() tries a fresh one."""
    taken = occupant.getsockname()[1]
    ports = iter([taken])
    real = _localserver.free_port
    monkeypatch.setattr(_localserver, "free_port", lambda: next(ports, None) or real())
    assert _served_on(tmp_path) != taken


def test_a_restart_whose_port_is_held_waits_for_it(
    tmp_path: Path, occupant: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start on a given port that another process holds is tried again on it once it is free."""
    port = occupant.getsockname()[1]
    real = _localserver.port_taken

    def taken_then_freed(port: int) -> bool:
        taken = real(port)
        occupant.close()
        return taken

    monkeypatch.setattr(_localserver, "port_taken", taken_then_freed)
    assert _served_on(tmp_path, port) == port


def test_a_port_taken_at_every_try_fails_after_a_few_fresh_ports(
    tmp_path: Path, occupant: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starts are bounded: FRESH_PORTS tries that all find their port taken raise PortTaken."""
    tries: list[int] = []

    def always_taken() -> int:
        tries.append(occupant.getsockname()[1])
        return tries[-1]

    monkeypatch.setattr(_localserver, "free_port", always_taken)
    with pytest.raises(_localserver.PortTaken):
        _localserver.start(tmp_path)
    assert len(tries) == _localserver.FRESH_PORTS
