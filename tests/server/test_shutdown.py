"""Stopping the server: SIGTERM and Ctrl-C lose no acknowledged record."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from serverproc import TEST_KEY, start_server

from banyan._wire import BATCH_PATH, MSGPACK

from .helpers import body, record


def _send_until_refused(base_url: str, acked: list[str], stop: threading.Event) -> None:
    headers = {"X-API-Key": TEST_KEY, "Content-Type": MSGPACK}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for n in range(10_000):
            if stop.is_set():
                return
            ids = [f"b{n}-{i}" for i in range(500)]
            try:
                response = client.post(
                    BATCH_PATH, content=body(record(i) for i in ids), headers=headers
                )
            except httpx.HTTPError:
                return
            if response.status_code != 200:
                return
            acked.extend(ids)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_keeps_acknowledged_records(tmp_path: Path, sig: int) -> None:
    """Every record acknowledged before a SIGTERM/SIGINT is there after a restart."""
    srv = start_server(tmp_path)
    acked: list[str] = []
    stop = threading.Event()
    sender = threading.Thread(target=_send_until_refused, args=(srv.base_url, acked, stop))
    sender.start()
    deadline = time.monotonic() + 20
    while len(acked) < 5000 and time.monotonic() < deadline:
        time.sleep(0.05)
    code = srv.stop(sig)
    stop.set()
    sender.join(20)
    assert code == 0, srv.log.read_text()
    assert len(acked) >= 5000
    again = start_server(tmp_path, db=srv.database)
    try:
        stored = set(again.stored_ids())
        assert stored >= set(acked)
        assert again.summary()["stored"] == len(stored)
    finally:
        again.stop()


def test_restart_with_same_key_is_idempotent(tmp_path: Path) -> None:
    """Restarting on the same database with the same --api-key keeps one project and key."""
    first = start_server(tmp_path)
    project = httpx.get(f"{first.base_url}/api/auth/validate", headers=first.headers).json()
    first.stop()
    second = start_server(tmp_path, db=first.database)
    try:
        again = httpx.get(f"{second.base_url}/api/auth/validate", headers=second.headers).json()
        assert again["project_id"] == project["project_id"]
        assert "already present" in second.log.read_text()
    finally:
        second.stop()
