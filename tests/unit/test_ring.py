"""The ring: bounded in bytes, drops counted by reason, warned about once."""

from __future__ import annotations

import logging
import sys
import threading

import pytest
from contention import contended
from fakes import MakeLogger

from banyan._ring import Ring


def test_ring_refuses_records_beyond_its_byte_bound() -> None:
    """Pushes that would exceed max_bytes are refused (the caller counts them), nothing kept."""
    ring = Ring(100, 10**6, 10**6, lambda: None)
    assert all(ring.push(b"x" * 30) for _ in range(3))
    assert not ring.push(b"x" * 30)
    assert (len(ring), ring.bytes) == (3, 90)
    assert ring.push(b"x" * 10)


def test_take_respects_record_and_byte_limits() -> None:
    """take() stops at either limit, returns positions, and frees the bytes."""
    ring = Ring(10**6, 10**6, 10**6, lambda: None)
    for n in range(10):
        ring.push(bytes([n]) * 10)
    start, first = ring.take(4, 10**6)
    assert (start, len(first)) == (0, 4)
    start, second = ring.take(100, 25)
    assert (start, len(second)) == (4, 2)
    assert ring.bytes == 40
    assert ring.pushed() == 10


def test_take_always_returns_one_oversized_record() -> None:
    """A record larger than the batch byte limit still leaves, alone."""
    ring = Ring(10**6, 10**6, 10**6, lambda: None)
    ring.push(b"x" * 500)
    assert len(ring.take(10, 100)[1]) == 1


def test_wake_fires_per_threshold_not_per_push() -> None:
    """The wake callback runs when the backlog reaches the threshold and again after each
    further threshold's worth of pushes, never once per push."""
    wakes: list[int] = []
    ring = Ring(10**6, 5, 10**6, lambda: wakes.append(1))
    for _ in range(12):
        ring.push(b"r")
    assert len(wakes) == 2
    ring.take(100, 10**6)
    for _ in range(4):
        ring.push(b"r")
    assert len(wakes) == 2
    ring.push(b"r")
    assert len(wakes) == 3


def test_byte_threshold_wakes_per_threshold_worth() -> None:
    """Crossing the byte threshold wakes, even with records still under the count."""
    wakes: list[int] = []
    ring = Ring(10**6, 10**6, 100, lambda: wakes.append(1))
    for _ in range(10):
        ring.push(b"x" * 30)
    assert len(wakes) == 2


def _fast_and_slow(
    make_logger: MakeLogger, max_queue_bytes: int, batch_size: int
) -> tuple[list[int], list[int], Ring, int]:
    """Log 60 equal records through log_prompt and push the same bytes into a ring with no
    fast path, taking 3 from each every 7th record; the pushed() count at each wake of
    both, the logger's ring and its queue_full drops. Every acceptance and count must agree."""
    logger, _ = make_logger(max_queue_bytes=max_queue_bytes, batch_size=batch_size, spool_dir=False)
    logger._idle = False
    logger._next_id = lambda: "fixed-0x1"  # equal sizes, so the oracle can replay them
    ring = logger._flusher.ring
    wakes: list[int] = []
    ring._wake = lambda: wakes.append(ring.pushed())
    expected: list[int] = []
    oracle = Ring(
        max_queue_bytes, batch_size, logger.config.wake_bytes,
        lambda: expected.append(oracle.pushed()), fast=False,
    )  # fmt: skip
    refused = 0
    for n in range(1, 61):
        accepted = logger.log_prompt("x" * 30, "y")
        assert accepted == oracle.push(b"x" * len(ring._items[-1]))
        refused += not accepted
        assert ring.bytes == oracle.bytes <= max_queue_bytes
        if n % 7 == 0:
            assert len(ring.take(3, 10**6)[1]) == len(oracle.take(3, 10**6)[1])
    assert logger.get_stats()["dropped"]["queue_full"] == refused
    return wakes, expected, ring, refused


def test_the_fast_path_wakes_and_refuses_exactly_as_push_alone(make_logger: MakeLogger) -> None:
    """Against the byte threshold and the bound, log_prompt's credit fast path wakes at the
    same records, and accepts the same ones, as a ring taking every record through push()."""
    wakes, expected, ring, refused = _fast_and_slow(make_logger, 1000, 1000)
    assert refused > 0
    assert wakes == expected
    assert len(wakes) >= 2
    ring.close()
    assert ring.credit[0] == 0
    assert not ring.push(b"x")


def test_the_fast_path_wakes_every_batch_size_records_give_or_take_one(
    make_logger: MakeLogger,
) -> None:
    """Against the record threshold the credit covers up to the threshold, so the record
    past it (not the one reaching it) wakes: every batch_size or batch_size + 1 records."""
    wakes, expected, _, _ = _fast_and_slow(make_logger, 10**6, 5)
    assert expected == list(range(5, 61, 5))
    gaps = {later - earlier for earlier, later in zip([0, *wakes], wakes, strict=False)}
    assert gaps <= {5, 6}
    assert len(wakes) >= 60 // 6


def test_full_queue_drops_are_counted_and_warned_once(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a spool and with a tiny max_queue_bytes, overflow is queue_full, warned once."""
    logger, _ = make_logger(max_queue_bytes=4096, spool_dir=False)
    logger._idle = False
    with caplog.at_level(logging.WARNING, logger="banyan"):
        results = [logger.log_prompt("x" * 400, "y") for _ in range(50)]
    stats = logger.get_stats()
    kept = results.count(True)
    assert 0 < kept < 50
    assert stats["dropped"]["queue_full"] == 50 - kept
    assert stats["queue_size"] == kept
    assert stats["logs_queued"] == 50
    warnings = [r for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(warnings) == 1


def test_a_record_larger_than_the_ring_is_too_large(make_logger: MakeLogger) -> None:
    """Without a spool, a record that could never fit is dropped as too_large, not queue_full."""
    logger, _ = make_logger(max_queue_bytes=1024, spool_dir=False)
    logger._idle = False
    assert logger.log_prompt("x" * 5000, "y") is False
    dropped = logger.get_stats()["dropped"]
    assert (dropped["too_large"], dropped["queue_full"]) == (1, 0)


def test_take_survives_producers_appending_while_it_sizes_a_batch() -> None:
    """A producer may append between take() creating its deque iterator and using it
    (the deque then raises "mutated during iteration"): take() sizes the batch again."""
    ring = Ring(1 << 40, 10**9, 1 << 40, lambda: None)
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            ring.append(b"x" * 100)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    producers = [threading.Thread(target=produce) for _ in range(2)]
    try:
        for thread in producers:
            thread.start()
        batches = [ring.take(50, 3000)[1] for _ in range(5000)]
    finally:
        stop.set()
        for thread in producers:
            thread.join()
        sys.setswitchinterval(interval)
    assert all(sum(map(len, batch)) <= 3000 for batch in batches)
    assert ring.popped == sum(map(len, batches)) > 0


def test_a_push_re_entered_from_a_signal_handler_keeps_the_byte_count(
    make_logger: MakeLogger,
) -> None:
    """A handler's log_prompt inside another push (the lock is re-entrant) grants a credit
    that fast-path log_prompt calls spend before the outer push grants its own: those bytes
    still count."""
    logger, _ = make_logger(max_queue_bytes=10_000, batch_size=100, spool_dir=False)
    logger._idle = False
    ring = logger._flusher.ring
    original = ring._wake_due
    fired: list[bool] = []

    def handler_runs_here(held: int) -> bool:
        if not fired:
            fired.append(True)
            assert logger.log_prompt("signal", "handler")
            for _ in range(3):  # other threads, on the fast path, spend its credit
                assert logger.log_prompt("y" * 40, "o")
            assert ring.credit[0] > 0
        return original(held)

    ring._wake_due = handler_runs_here  # type: ignore[method-assign]
    assert logger.log_prompt("outer", "o")
    assert fired
    assert len(ring._items) == 5
    ring._settle()
    assert ring.bytes == sum(map(len, ring._items))


def test_without_a_gil_no_credit_is_granted_and_threads_keep_every_record(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a free-threaded build with its GIL off (sys._is_gil_enabled() forced False) the
    ring grants no credit, so every record takes the locked push: four threads logging at
    once under a 10 us switch interval keep every record and every byte counted."""
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    logger, _ = make_logger(max_queue_bytes=1 << 30, batch_size=10**6, spool_dir=False)
    logger._idle = False  # no flusher: the ring only fills
    ring = logger._flusher.ring
    threads_n, per_thread = 4, 2_000
    odd: list[tuple[int, int]] = []

    def produce(t: int) -> None:
        for i in range(per_thread):
            if not logger.log_prompt(f"t{t} {i}", "o") or ring.credit[0]:
                odd.append((t, i))

    contended(produce, threads_n)
    total = threads_n * per_thread
    assert odd == []
    stats = logger.get_stats()
    assert (stats["logs_queued"], stats["queue_size"], len(ring)) == (total, total, total)
    assert ring.bytes == ring.bytes_in == sum(map(len, ring._items))
    assert not ring.try_append(b"x", 1)
