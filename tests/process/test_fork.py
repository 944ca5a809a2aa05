"""A real fork: the child never sends the parent's buffered records, ids stay unique."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import pytest
from prockit import fork_child, run_script

import banyan

if TYPE_CHECKING:
    from serverproc import Server

PARENT, CHILD = 300, 200


def _parked(logger: banyan.PromptStackLogger) -> None:
    """Wait (<= 30 s) until the logger's sending thread sleeps out its interval: records logged
    after it stay queued. A thread started late on a loaded machine would send them first."""
    flusher = logger._flusher
    thread = flusher._threads[0]
    deadline, calm = time.monotonic() + 30, 0
    while time.monotonic() < deadline:
        # Asleep in _run's Event.wait(interval), not in a wait of a send or of a flush, with
        # no wake-up pending; twice in a row, 20 ms apart.
        frame = sys._current_frames().get(thread.ident or 0)
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        idle = "_run" in names and names[names.index("_run") - 1] == "wait"
        calm = calm + 1 if idle and not flusher._event.is_set() else 0
        if calm == 2:
            return
        time.sleep(0.02)
    raise AssertionError("the sending thread never went back to sleep")


def _child(logger: banyan.PromptStackLogger) -> int:
    if logger.get_stats()["queue_size"] != 0:
        return 3
    for i in range(CHILD):
        logger.log_prompt(input=f"child {i}", output="o")
    return 0 if logger.flush(timeout=20) else 4


@pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
@pytest.mark.parametrize("http2", [True, False])
def test_fork_without_flush_sends_each_record_once(server: Server, http2: bool) -> None:
    """Parent logs N, forks unflushed, child logs M: the server stores N+M ids, 0 duplicates."""
    logger = banyan.PromptStackLogger(
        api_key=server.api_key, base_url=server.base_url, http2=http2, flush_interval=60
    )
    logger.log_prompt(input="warm-up", output="o")  # starts the thread, opens a connection
    assert logger.flush(timeout=20)
    _parked(logger)
    for i in range(PARENT):
        logger.log_prompt(input=f"parent {i}", output="o")
    assert logger.get_stats()["queue_size"] == PARENT
    assert fork_child(lambda: _child(logger)) == 0
    assert logger.flush(timeout=20)
    logger.shutdown(timeout=5)
    ids = server.stored_ids()
    assert len(ids) == len(set(ids)) == 1 + PARENT + CHILD
    assert server.summary()["duplicates"] == 0
    assert len({i.rsplit("-", 1)[0] for i in ids}) == 2


def test_a_fork_that_skipped_the_hooks_is_caught_on_the_hot_path(server: Server) -> None:
    """libc fork() without Python's hooks (uWSGI-style): the child's first record finds its
    credit wiped, takes the slow path and resets the logger; the parent's records are sent
    once, by the parent."""
    run_script("hookless_fork.py", server, PARENT, CHILD)
    ids = server.stored_ids()
    assert len(ids) == len(set(ids)) == PARENT + CHILD
    assert len({i.rsplit("-", 1)[0] for i in ids}) == 2


def test_a_child_forked_without_the_hooks_keeps_the_callers_record_id(server: Server) -> None:
    """The hookless child's first record renumbers only an id the parent's IdSource made: a
    record_id the caller gave stays the record's id (a later score names it)."""
    run_script("hookless_fork.py", server, PARENT, CHILD, "given")
    ids = server.stored_ids()
    assert len(ids) == len(set(ids)) == PARENT + CHILD
    assert "child-given" in ids


def test_a_child_forked_without_the_hooks_that_only_shuts_down_sends_nothing(
    server: Server,
) -> None:
    """The hookless child's first call is shutdown(): it resets the logger first, so the
    parent's queued records are sent once, by the parent."""
    run_script("hookless_fork.py", server, PARENT, 0, "shutdown")
    ids = server.stored_ids()
    assert len(ids) == len(set(ids)) == PARENT
    assert server.summary()["duplicates"] == 0
