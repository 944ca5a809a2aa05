"""The flusher's edges other tests pass by (mutants of _flusher.py, issue 21)."""

from __future__ import annotations

import threading

from fakes import tallied

from banyan._flusher import Flusher


def test_draining_an_empty_ring_says_there_was_nothing() -> None:
    """drain_one() is False on an empty ring (a worker then waits, it does not spin)."""
    exported: list[object] = []
    flusher = Flusher(
        tallied(lambda records, deadline, stop: exported.append(records)),
        lambda records, exc: None,
        max_queue_bytes=10**6, wake_records=10**6, wake_bytes=10**6, batch_records=2,
        batch_bytes=10**6, interval=60.0, workers=1, background=False,
    )  # fmt: skip
    assert flusher.drain_one(None) is False
    flusher.ring.push(b"r")
    assert flusher.drain_one(None) is True
    assert exported == [[b"r"]]


def _flusher(workers: int = 1, background: bool = False, interval: float = 60.0) -> Flusher:
    return Flusher(
        tallied(lambda records, deadline, stop: True), lambda records, exc: None,
        max_queue_bytes=10**6, wake_records=10**6, wake_bytes=10**6, batch_records=2,
        batch_bytes=10**6, interval=interval, workers=workers, background=background,
    )  # fmt: skip


def test_a_worker_with_nothing_to_do_waits_the_interval() -> None:
    """An idle worker sleeps for the configured interval (then flushes), not until woken."""
    flusher = _flusher(background=True, interval=0.25)
    waited, idle = list[float | None](), threading.Event()
    real = flusher._event.wait

    def wait(timeout: float | None = None) -> bool:
        waited.append(timeout)
        idle.set()
        return real(timeout)

    flusher._event.wait = wait  # type: ignore[method-assign]
    flusher.start()
    assert idle.wait(10)
    assert flusher.stop(10)
    assert waited[0] == 0.25


def test_a_worker_started_meanwhile_is_seen_under_the_lock() -> None:
    """No more workers than configured: one started by another worker between the check
    without the lock and the one under it is counted."""
    flusher = _flusher(workers=2)
    flusher._threads = [threading.current_thread()]

    def backlog() -> bool:
        flusher._threads.append(threading.current_thread())  # another worker's spawn
        return True

    flusher.ring.backlog = backlog  # type: ignore[method-assign]
    flusher._grow()
    assert len(flusher._threads) == 2


def test_a_batch_starting_at_the_flush_target_is_not_waited_for() -> None:
    """flush() waits for the batches holding records pushed before it, not for one that
    starts at its target (records pushed after it)."""
    flusher = _flusher()
    flusher.ring.push(b"r")
    assert flusher.drain_one(None)
    with flusher._cond:
        flusher._inflight.add(1)
        assert flusher._done(1)
        flusher._inflight.add(0)
        assert not flusher._done(1)
