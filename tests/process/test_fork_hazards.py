"""Forks at the worst moments: mid-request, locks held, mid-import; counted at the server."""

from __future__ import annotations

import contextlib
import os
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from faultproxy import running
from prockit import fork_child, run_script, wait_for

import banyan
from banyan import _default
from banyan._spool import Spool
from banyan._wire import BATCH_PATH

if TYPE_CHECKING:
    from serverproc import Server

pytestmark = pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")

PARENT, CHILD = 500, 300


def _log_and_flush(count: int, prefix: str) -> int:
    for i in range(count):
        if not banyan.log_prompt(input=f"{prefix} {i}", output="o"):
            return 2
    return 0 if banyan.flush(timeout=20) else 3


def _assert_exactly(server: Server, count: int) -> None:
    ids = server.stored_ids()
    assert len(ids) == len(set(ids)) == count
    assert server.summary()["duplicates"] == 0


def test_fork_while_the_flusher_is_mid_request(server: Server) -> None:
    """A batch in flight at the fork is sent once, by the parent; the child sends only its own."""
    with running(server.base_url) as proxy:
        proxy.push("stall", path=BATCH_PATH)
        logger = banyan.configure(
            api_key=server.api_key, base_url=proxy.url, http2=False,
            flush_interval=0.05, retry_delay=0.05,
        )  # fmt: skip
        for i in range(PARENT):
            banyan.log_prompt(input=f"parent {i}", output="o")
        wait_for(lambda: logger.get_stats()["in_flight"] == PARENT, 10, "the stalled batch")
        assert fork_child(lambda: _log_and_flush(CHILD, "child")) == 0
        assert server.summary()["stored"] == CHILD
        proxy.release.set()  # the stalled request fails; the parent retries it
        assert banyan.flush(timeout=20)
    _assert_exactly(server, PARENT + CHILD)


def test_fork_while_another_thread_holds_every_logger_lock(server: Server) -> None:
    """Locks held by another thread at fork time do not deadlock the child (bounded wait)."""
    logger = banyan.configure(api_key=server.api_key, base_url=server.base_url, flush_interval=60)
    for i in range(PARENT):
        banyan.log_prompt(input=f"parent {i}", output="o")
    flusher = logger._flusher
    locks: list[Any] = [flusher._cond, flusher.ring._take_lock, flusher.ring._lock,
                        logger._stats._lock, logger._transport._lock,
                        _default._unconfigured._lock]  # fmt: skip
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        assert held.wait(10)
        assert fork_child(lambda: _log_and_flush(CHILD, "child"), timeout=30) == 0
    finally:
        release.set()
        holder.join(10)
    assert banyan.flush(timeout=20)
    _assert_exactly(server, PARENT + CHILD)


def test_fork_right_after_the_first_log_in_a_fresh_interpreter(server: Server) -> None:
    """Children forked while the parent's flusher imports httpx and connects deliver everything."""
    children, per_child = 8, 50
    run_script("first_log_fork.py", server, children, per_child)
    _assert_exactly(server, 1 + children * per_child)


def _holds_files(directory: str) -> int:
    """1 if this process has a descriptor of a file in ``directory``."""
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            # A segment (the directory's own descriptor, fsynced meanwhile, locks nothing).
            if os.readlink(f"/proc/self/fd/{fd}").startswith(directory + os.sep):
                return 1
    return 0


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_children_forked_while_the_spool_works_hold_none_of_its_files(tmp_path: Path) -> None:
    """Forks while a durable logger writes, syncs and prepares segments: no child keeps a
    descriptor of the parent's spool (it would hold that segment's lock, so no process
    could replay it after the parent died, as long as the child lives)."""
    logger = banyan.PromptStackLogger(
        api_key="psk_fork_spool", base_url="http://127.0.0.1:9", durability="durable",
        spool_dir=str(tmp_path), spool_sync="interval", spool_max_bytes=1 << 20,
        flush_interval=0.02, max_retries=0,
    )  # fmt: skip
    directory = str(logger._spooling.spool.directory) if logger._spooling else ""
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            logger.log_prompt(input="x" * 600, output="y" * 600)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        leaked = sum(fork_child(lambda: _holds_files(directory)) for _ in range(150))
    finally:
        stop.set()
        producer.join(10)
        logger.shutdown(timeout=1)
    assert directory
    assert leaked == 0


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_fork_after_a_failed_replay_put_its_segment_back_leaves_the_child_nothing(
    tmp_path: Path,
) -> None:
    """put_back() keeps the segment's descriptor in a list the child closes (never unlocks)."""
    spool = Spool(tmp_path)
    assert spool.append(b"record")
    spool.seal()
    segment = spool.claim()
    assert segment is not None
    spool.put_back(segment)

    def child() -> int:
        spool.after_fork_in_child()  # what the logger's at-fork hook does
        return _holds_files(str(tmp_path))

    try:
        assert fork_child(child) == 0
        assert Spool(tmp_path).claim() is None  # the parent still holds it
    finally:
        spool.close()
