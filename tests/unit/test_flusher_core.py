"""The flusher core driven directly: its threads, what export is given, in-flight counts."""

from __future__ import annotations

import threading
import time
from typing import Any

from banyan._flusher import Flusher
from banyan._record import Encoded


def _core(export: Any, **options: Any) -> Flusher:
    settings: dict[str, Any] = {"max_queue_bytes": 10**6, "wake_records": 10**6,
                                "wake_bytes": 10**6, "batch_records": 2, "batch_bytes": 10**6,
                                "interval": 60.0, "workers": 2, "background": False}  # fmt: skip
    settings.update(options)
    return Flusher(export, lambda records, exc: None, **settings)


def test_workers_are_daemon_threads_named_after_the_flusher() -> None:
    """The first worker is "banyan-flusher", the next "banyan-flusher-1"; both daemons."""
    gate, calls = threading.Event(), []

    def export(records: list[Encoded], deadline: float | None, stop: threading.Event) -> bool:
        calls.append(records)  # the first batch returns at once, so the worker grows
        return len(calls) == 1 or gate.wait(10)

    flusher = _core(export, background=True, wake_records=1)
    for n in range(6):
        flusher.ring.push(b"r%d" % n)
    flusher.start()
    deadline = time.monotonic() + 30
    while len(flusher._threads) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    names = [(t.name, t.daemon) for t in flusher._threads]
    gate.set()
    assert flusher.stop(10)
    assert names == [("banyan-flusher", True), ("banyan-flusher-1", True)]


def test_export_gets_the_deadline_and_the_stop_event() -> None:
    """flush(timeout) hands export its deadline and the flusher's stop event."""
    seen: list[tuple[float | None, threading.Event]] = []

    def export(records: list[Encoded], deadline: float | None, stop: threading.Event) -> bool:
        seen.append((deadline, stop))
        return True

    flusher = _core(export)
    flusher.ring.push(b"r")
    before = time.monotonic()
    assert flusher.flush(5.0)
    [(deadline, stop)] = seen
    assert deadline is not None
    assert before + 5.0 <= deadline <= time.monotonic() + 5.0
    assert stop is flusher._stop
    assert flusher.send_now([b"x"], before + 7.0)
    assert seen[-1][0] == before + 7.0


def test_in_flight_counts_records_handed_out_until_they_settle() -> None:
    """in_flight is the records export holds; a direct send adds to it, an abandon removes
    what it gives back."""
    gate, entered = threading.Event(), threading.Event()
    counts: list[int] = []

    def export(records: list[Encoded], deadline: float | None, stop: threading.Event) -> bool:
        counts.append(flusher.in_flight)
        if records == [b"direct"]:
            return True
        entered.set()
        return gate.wait(10)

    flusher = _core(export)
    for n in range(3):
        flusher.ring.push(b"r%d" % n)
    worker = threading.Thread(target=flusher.drain_one, args=(None,))
    worker.start()
    entered.wait(10)
    assert flusher.send_now([b"direct"], None) is True
    assert counts == [2, 3]
    assert flusher.in_flight == 2
    assert flusher.abandon() == [b"r0", b"r1"]
    assert flusher.in_flight == 0
    gate.set()
    worker.join()
    assert flusher.in_flight == 0
