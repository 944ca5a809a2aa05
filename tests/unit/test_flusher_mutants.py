"""The flusher's edges other tests pass by (mutants of _flusher.py, issue 21)."""

from __future__ import annotations

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
