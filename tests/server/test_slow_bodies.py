"""Slow request bodies (#14, item 2): a stalled body is cut off; a project gets only its share."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import Server, start_server

from banyan.server._limits import PER_PROJECT

from .helpers import body, call, open_batch, post_batch, record, status_of, unique

#: Seconds a body may stall in the tests that set ``--body-timeout``.
STALL = 1.0
#: The body timeout where a body trickles every STALL/4 s: a pause 16 times late is no stall.
PATIENT = 4.0


@contextlib.contextmanager
def _stalled(server: Server, key: str, count: int) -> Iterator[list[socket.socket]]:
    conns = [open_batch(server, key) for _ in range(count)]
    try:
        yield conns
    finally:
        for conn in conns:
            conn.close()


def _answered(conns: list[socket.socket], count: int) -> list[int]:
    """The statuses of the first ``count`` connections to be answered (10 s at most)."""
    statuses: list[int] = []
    pending, deadline = list(conns), time.monotonic() + 10
    while len(statuses) < count and time.monotonic() < deadline:
        ready, _, _ = select.select(pending, [], [], 0.1)
        for conn in ready:
            statuses.append(status_of(conn))
            pending.remove(conn)
    return statuses


def test_slow_bodies_of_one_project_leave_other_projects_ingesting(
    shared_server: Server, project_b: str
) -> None:
    """Ten stalled batches of project B: B holds its share, the rest get 429; A's are stored."""
    with _stalled(shared_server, project_b, 10) as conns:
        assert _answered(conns, 10 - PER_PROJECT) == [429] * (10 - PER_PROJECT)
        assert post_batch(shared_server, body([record()]), key=project_b).status_code == 429
        ids = [unique("normal") for _ in range(5)]
        for rid in ids:
            response = post_batch(shared_server, body([record(rid)]))
            assert response.status_code == 200, response.text
        assert set(ids) <= set(shared_server.stored_ids())


@pytest.fixture
def strict_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server that cuts off a body stalled for STALL seconds (or the test's parameter)."""
    srv = start_server(tmp_path, "--body-timeout", str(getattr(request, "param", STALL)))
    try:
        yield srv
    finally:
        srv.stop()


def test_stalled_body_is_answered_408_and_frees_its_slot(strict_server: Server) -> None:
    """A body that makes no progress for --body-timeout s gets 408; its slot serves again."""
    key = strict_server.api_key
    with _stalled(strict_server, key, PER_PROJECT) as conns:
        statuses = [status_of(conn) for conn in conns]
    assert statuses == [408] * PER_PROJECT
    for _ in range(PER_PROJECT):
        assert post_batch(strict_server, body([record()])).status_code == 200


@pytest.mark.parametrize("strict_server", [PATIENT], indirect=True)
def test_body_that_keeps_progressing_outlives_the_timeout(strict_server: Server) -> None:
    """A body that sends a byte every STALL/4 s is read to the end though it takes 1.5 x PATIENT."""
    content = body([record("trickled")])
    conn = open_batch(strict_server, strict_server.api_key, len(content))
    with conn:
        rest = content[1:]
        pause = STALL / 4
        step = max(1, len(rest) // int(1.5 * PATIENT / pause))
        for start in range(0, len(rest), step):
            time.sleep(pause)
            conn.sendall(rest[start : start + step])
        assert status_of(conn) == 200
    assert "trickled" in strict_server.stored_ids()


def test_management_requests_are_cut_off_too(strict_server: Server) -> None:
    """A stalled JSON body on a management endpoint also gets 408."""
    head = (
        "POST /api/v2/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {strict_server.api_key}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{"
    )
    with socket.create_connection(("127.0.0.1", strict_server.port), timeout=30) as conn:
        conn.sendall(head.encode())
        assert status_of(conn) == 408
    assert call(strict_server, "GET", "/api/auth/validate").status_code == 200
