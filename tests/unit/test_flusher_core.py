"""The flusher core driven directly: its threads, what export is given, in-flight counts."""

from __future__ import annotations

import threading
import time
from typing import Any

from fakes import tallied

from banyan._flusher import Flusher
from banyan._record import Encoded
from banyan._stats import DropReason


def _core(export: Any, **options: Any) -> Flusher:
    settings: dict[str, Any] = {"max_queue_bytes": 10**6, "wake_records": 10**6,
                                "wake_bytes": 10**6, "batch_records": 2, "batch_bytes": 10**6,
                                "interval": 60.0, "workers": 2, "background": False}  # fmt: skip
    settings.update(options)
    return Flusher(tallied(export), lambda records, exc: None, **settings)


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
    """in_flight is the records export holds; a direct send adds to it; an abandon gives the
    batches back, counted in flight until their new owner gives them up (the ledger)."""
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
    batches = flusher.abandon()
    assert [record for batch in batches for record in batch.records] == [b"r0", b"r1"]
    assert flusher.in_flight == 2
    flusher._ledger.give_up(batches, DropReason.SHUTDOWN, "at shutdown")
    assert flusher.in_flight == 0
    gate.set()
    worker.join()
    assert flusher.in_flight == 0


def test_a_failing_export_is_reported_with_its_records() -> None:
    """An export that raises is reported (records, error) and the send reports False."""
    errors: list[tuple[list[Encoded], BaseException]] = []
    boom = RuntimeError("boom")

    def export(records: list[Encoded], deadline: float | None, stop: threading.Event) -> bool:
        raise boom

    flusher = Flusher(tallied(export), lambda records, exc: errors.append((records, exc)),
                      max_queue_bytes=10**6, wake_records=10**6, wake_bytes=10**6,
                      batch_records=2, batch_bytes=10**6, interval=60.0, workers=1,
                      background=False)  # fmt: skip
    assert flusher.send_now([b"x"], None) is False
    assert errors == [([b"x"], boom)]
    assert flusher.in_flight == 0


def test_start_is_idempotent_and_never_restarts_a_stopped_flusher() -> None:
    """start() twice makes one worker; after stop() it makes none."""
    flusher = _core(lambda records, deadline, stop: True, background=True, workers=1)
    assert not flusher.started
    flusher.start()
    flusher.start()
    assert (flusher.started, len(flusher._threads)) == (True, 1)
    assert flusher.stop(10)
    stopped = _core(lambda records, deadline, stop: True, background=True)
    assert stopped.stop(1)
    stopped.start()
    assert (stopped.started, stopped._threads) == (False, [])


def test_workers_grow_only_with_a_backlog_and_up_to_the_limit() -> None:
    """A second worker starts only while a backlog waits, and never past `workers`."""
    gate, calls = threading.Event(), []

    def export(records: list[Encoded], deadline: float | None, stop: threading.Event) -> bool:
        calls.append(records)
        return len(calls) == 1 or gate.wait(10)

    one = _core(export, background=True, workers=1, wake_records=1)
    calm = _core(lambda records, deadline, stop: True, background=True, workers=2)
    for flusher, count in ((one, 6), (calm, 1)):
        for n in range(count):
            flusher.ring.push(b"r%d" % n)
        flusher.start()
    assert calm.flush(10)
    deadline = time.monotonic() + 10
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    threads = (len(one._threads), len(calm._threads))
    gate.set()
    assert one.stop(10)
    assert calm.stop(10)
    assert threads == (1, 1)


def test_a_flusher_grants_ring_credit_unless_told_not_to() -> None:
    """fast_path defaults to True (the ring grants credit); fast_path=False grants none."""
    fast = _core(lambda records, deadline, stop: True)
    slow = _core(lambda records, deadline, stop: True, fast_path=False)
    for flusher in (fast, slow):
        flusher.ring.push(b"r")
    assert fast.ring.credit[0] > 0
    assert slow.ring.credit[0] == 0


def test_a_worker_looks_for_work_every_interval_and_runs_the_side_step() -> None:
    """Records below every wake threshold leave within the interval; the side step (replay)
    runs on each pass with the pass's deadline, and its errors are reported, not fatal."""
    exported, sides, errors = [], [], []

    def side(deadline: float | None) -> bool:
        sides.append(deadline)
        if len(sides) == 1:
            raise RuntimeError("side broke")
        return False

    def export(records: list[Encoded], deadline: float | None, stop: threading.Event) -> bool:
        exported.append(records)
        return True

    flusher = Flusher(tallied(export),
                      lambda records, exc: errors.append((records, str(exc))),
                      max_queue_bytes=10**6, wake_records=10**6, wake_bytes=10**6,
                      batch_records=10, batch_bytes=10**6, interval=0.05, workers=1,
                      background=True, side=side)  # fmt: skip
    flusher.start()
    flusher.ring.push(b"quiet")
    deadline = time.monotonic() + 10
    while not exported and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flusher.stop(10)
    assert exported == [[b"quiet"]]
    assert errors[0] == ([], "side broke")
    assert sides[0] is None
    sync = _core(lambda records, deadline, stop: True, side=side)
    sync.ring.push(b"r")
    assert sync.flush(5.0)
    assert sides[-1] is not None
