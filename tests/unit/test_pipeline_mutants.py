"""The pipeline's ways out that other tests pass by (mutants of _pipeline.py, issue 21)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import MakeLogger, status

import banyan
from banyan._pipeline import remaining
from banyan._record import Encoded
from banyan._stats import DropReason

PARTS = ("logs_sent", "logs_dropped", "queue_size", "in_flight", "spooled_pending")


def _adds_up(logger: banyan.PromptStackLogger) -> dict[str, Any]:
    stats: dict[str, Any] = dict(logger.get_stats())
    assert stats["logs_queued"] == sum(stats[part] for part in PARTS), stats
    return stats


def _boom(method: str, path: str, **kw: Any) -> Any:
    raise RuntimeError("boom")


def test_an_export_that_raises_is_an_internal_error_warned_once_with_the_exception(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug of ours while sending (not a transport error): counted, last_error, one warning."""
    logger, _ = make_logger(_boom, _boom, background_thread=False, spool_dir=False)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert logger.log_prompt("in", "out", blocking=True) is False
        assert logger.log_prompt("in", "out", blocking=True) is False
    stats = _adds_up(logger)
    assert stats["dropped"]["internal_error"] == 2
    assert stats["last_error"] == "RuntimeError('boom')"
    assert caplog.messages == ["banyan: internal error while sending logs: RuntimeError('boom')"]


def test_a_blocking_log_gets_every_retry_its_timeout(make_logger: MakeLogger) -> None:
    """blocking=True sends with the deadline timeout * (max_retries + 1) from the call."""
    logger, _ = make_logger(timeout=7.0, max_retries=2, spool_dir=False)
    deadlines: list[float | None] = []
    flusher = logger._pipeline.flusher

    def send_now(records: list[Encoded], deadline: float | None) -> bool:
        deadlines.append(deadline)
        return True

    flusher.send_now = send_now  # type: ignore[method-assign]
    before = time.monotonic()
    assert logger.log_prompt("in", "out", blocking=True)
    after = time.monotonic()
    [deadline] = deadlines
    assert deadline is not None
    assert before + 21.0 <= deadline <= after + 21.0


def test_logs_after_shutdown_are_closed_drops_warned_once(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """Queued or blocking, a log after shutdown() is dropped as closed, with its reason."""
    logger, _ = make_logger(spool_dir=False)
    logger.shutdown(timeout=2)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert logger.log_prompt("in", "out") is False
        # The blocking one last: its error is last_error.
        assert logger.log_prompt("in", "out", blocking=True) is False
    stats = _adds_up(logger)
    assert stats["dropped"]["closed"] == 2
    assert stats["last_error"] == "log_prompt called after shutdown()"
    assert caplog.messages == [
        "banyan: a log record was dropped (closed: log_prompt called after shutdown()); "
        "further drops are counted"
    ]


def test_a_full_queue_with_a_spool_spools_the_overflow(
    make_logger: MakeLogger, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Buffered mode with a spool: a record the full ring refuses goes to the spool, kept."""
    logger, _ = make_logger(max_queue_bytes=4096, spool_dir=tmp_path)
    logger._idle = False
    with caplog.at_level(logging.WARNING, logger="banyan"):
        results = [logger.log_prompt("x" * 400, "y") for _ in range(20)]
    assert all(results)
    stats = _adds_up(logger)
    assert 0 < stats["queue_size"] < 20
    assert stats["spooled"] == 20 - stats["queue_size"]
    assert [m for m in caplog.messages if "queue is full" in m] == [
        f"banyan: the log queue is full (4096 bytes); records go to the spool at {tmp_path}"
    ]


def test_a_record_the_durable_spool_refuses_is_kept_in_memory_and_sent(
    make_logger: MakeLogger, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Durable mode: a record the spool refuses (re-entered, as from a signal handler) goes
    to the ring, the flusher starts, and it is sent."""
    logger, fake = make_logger(durability="durable", spool_dir=tmp_path)
    spool = logger._spool
    assert spool is not None
    with caplog.at_level(logging.WARNING, logger="banyan"), spool._lock:
        assert logger.log_prompt("in", "out") is True
        assert not logger._idle
    assert logger.flush(timeout=10)
    stats = _adds_up(logger)
    assert (stats["logs_sent"], stats["spooled"]) == (1, 0)
    assert caplog.messages == [
        "banyan: the spool refused a record (spool_error: spool: re-entered from a signal "
        "handler); it is kept in memory instead"
    ]
    assert fake.calls


def test_a_record_exactly_the_queue_size_is_queue_full_behind_another(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a spool, a record that fits an empty ring but not this one is queue_full,
    counted as entered and warned once with the bound; a larger one is too_large."""
    logger, _ = make_logger(max_queue_bytes=4096, spool_dir=False)
    logger._idle = False
    assert logger.log_prompt("first", "y")
    record = logger._pipeline.ring.max_bytes
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert logger._pipeline.push(b"x" * record) is False
        assert logger._pipeline.push(b"x" * record) is False
        assert logger._pipeline.push(b"x" * (record + 1)) is False
    stats = _adds_up(logger)
    assert (stats["dropped"]["queue_full"], stats["dropped"]["too_large"]) == (2, 1)
    assert stats["last_error"] == f"a {record + 1} byte record"
    assert caplog.messages[0] == (
        "banyan: the log queue is full (4096 bytes); records are being dropped "
        "and counted in get_stats()['dropped']['queue_full']"
    )
    assert len([m for m in caplog.messages if "queue is full" in m]) == 1


def test_a_flusher_that_cannot_start_leaves_records_queued_and_warns_once(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """A thread that cannot start (a process at its limit): records wait, counted as
    queued, one warning; once it starts the pipeline is no longer idle."""
    logger, _ = make_logger(spool_dir=False)
    flusher = logger._pipeline.flusher
    real_start = flusher.start

    def cannot() -> None:
        raise RuntimeError("can't start new thread")

    flusher.start = cannot  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert logger.log_prompt("a", "y")
        assert logger.log_prompt("b", "y")
    assert logger._idle
    assert _adds_up(logger)["queue_size"] == 2
    assert caplog.messages == [
        "banyan: cannot start the sending thread, records wait: can't start new thread"
    ]
    flusher.start = real_start  # type: ignore[method-assign]
    logger._pipeline.start()
    assert not logger._idle
    assert logger.flush(timeout=10)


def test_shutdown_with_a_spool_reports_success_and_what_it_handed_over(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """A clean shutdown with a spool returns True with nothing handed over; records the
    server refused are handed over to the next process, and shutdown says False."""
    logger, _ = make_logger(spool_dir=tmp_path / "clean")
    assert logger.log_prompt("in", "out")
    assert logger.shutdown(timeout=10) is True
    assert logger.get_stats()["spool_handed_over"] == 0
    logger, _ = make_logger(*[status(503)] * 100, max_retries=0, spool_dir=tmp_path / "down")
    for _ in range(3):
        assert logger.log_prompt("in", "out")
    assert logger.flush(timeout=10)
    logger.shutdown(timeout=0.2)
    assert logger.get_stats()["spool_handed_over"] == 3


def test_without_a_spool_nothing_is_handed_over(make_logger: MakeLogger) -> None:
    """spool_handed_over is 0, not absent, without a spool."""
    logger, _ = make_logger(spool_dir=False)
    assert logger.shutdown(timeout=2)
    assert logger.get_stats()["spool_handed_over"] == 0


def test_a_child_of_a_shut_logger_drops_its_logs_as_closed(make_logger: MakeLogger) -> None:
    """After the fork hook runs in the child of a closed logger, logs are closed drops, and
    flush and shutdown wait for no shutdown."""
    logger, _ = make_logger(spool_dir=False)
    logger.shutdown(timeout=2)
    logger._after_fork_in_child()
    assert logger.flush(timeout=0.5)
    assert logger.log_prompt("in", "out") is False
    assert _adds_up(logger)["dropped"]["closed"] == 1
    assert logger.shutdown(timeout=0.5)


def test_remaining_is_the_time_left_never_below_zero() -> None:
    """remaining(deadline): 0 once the deadline passed, else at most the time left."""
    assert remaining(time.monotonic() - 5) == 0.0
    left = remaining(time.monotonic() + 0.5)
    assert 0 < left <= 0.5


def test_durable_mode_spools_each_record_at_entry(make_logger: MakeLogger, tmp_path: Path) -> None:
    """Durable: a record goes into the spool first, not the ring, and the ring grants no
    credit to log_prompt's fast path."""
    logger, _ = make_logger(durability="durable", spool_dir=tmp_path)
    logger._idle = False
    assert logger.log_prompt("in", "out")
    stats = _adds_up(logger)
    assert (stats["spooled"], stats["queue_size"], stats["logs_queued"]) == (1, 0, 1)
    assert not logger._pipeline.ring._fast


class _Replay:
    """Stands in for the replayer's flush: notes each call, answers ``done``."""

    def __init__(self, done: bool) -> None:
        self.done = done
        self.calls: list[tuple[object, bool]] = []

    def __call__(self, deadline: float, wake: object, wait: bool = True) -> bool:
        self.calls.append((wake, wait))
        return self.done


def _replaying(logger: banyan.PromptStackLogger, done: bool) -> _Replay:
    spooling = logger._pipeline.spooling
    assert spooling is not None
    replay = spooling.replayer.flush = _Replay(done)  # type: ignore[method-assign]
    return replay


@pytest.mark.parametrize("durability", ["buffered", "durable"])
def test_flush_waits_for_the_spools_replay_only_in_durable_mode(
    make_logger: MakeLogger, tmp_path: Path, durability: str
) -> None:
    """flush() wakes the replay with the flusher's wake; durable mode waits for it and is
    done only once it is, buffered mode neither waits nor depends on it."""
    logger, _ = make_logger(durability=durability, spool_dir=tmp_path)
    replay = _replaying(logger, done=False)
    durable = durability == "durable"
    assert logger.flush(timeout=5) is not durable
    assert replay.calls == [(logger._pipeline.flusher.wake, durable)]
    replay.done = True
    assert logger.flush(timeout=5)


def test_flush_without_a_thread_wakes_no_one_and_a_refused_key_is_not_done(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """Without the background thread there is no flusher to wake; a spool held back for a
    process with the right key makes flush() False (issue 14)."""
    logger, _ = make_logger(background_thread=False, spool_dir=tmp_path)
    replay = _replaying(logger, done=True)
    assert logger.flush(timeout=5)
    assert replay.calls == [(None, False)]
    spooling = logger._pipeline.spooling
    assert spooling is not None
    spooling.replayer.key_refused = True
    assert logger.flush(timeout=5) is False


def test_shutdown_gives_the_replay_the_time_left_then_replays_no_more(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """close() waits for the replay (buffered mode too); after it, flush() leaves the
    closed spool alone."""
    logger, _ = make_logger(spool_dir=tmp_path)
    replay = _replaying(logger, done=True)
    assert logger.shutdown(timeout=5)
    assert [wait for _, wait in replay.calls] == [True]
    assert logger.flush(timeout=1)
    assert len(replay.calls) == 1


@pytest.mark.parametrize("auto_flush", [True, False])
def test_the_flusher_gets_the_configured_interval_and_workers(
    make_logger: MakeLogger, auto_flush: bool
) -> None:
    """flush_interval (None without auto_flush) and max_in_flight reach the flusher."""
    logger, _ = make_logger(auto_flush=auto_flush, flush_interval=3.5, max_in_flight=3,
                            spool_dir=False)  # fmt: skip
    flusher = logger._pipeline.flusher
    assert flusher._interval == (3.5 if auto_flush else None)
    assert flusher._workers == 3


def test_a_second_shutdown_on_the_same_thread_returns_true(make_logger: MakeLogger) -> None:
    """shutdown() after a clean shutdown() waits for nothing and says True."""
    logger, _ = make_logger(spool_dir=False)
    assert logger.log_prompt("in", "out")
    assert logger.shutdown(timeout=5)
    assert logger.shutdown(timeout=5)


def test_shutdown_without_a_spool_is_false_when_records_were_lost(make_logger: MakeLogger) -> None:
    """A record the server refused (no spool to keep it) makes shutdown() False."""
    logger, _ = make_logger(status(503), max_retries=0, spool_dir=False)
    assert logger.log_prompt("in", "out")
    assert logger.shutdown(timeout=5) is False
    assert _adds_up(logger)["logs_dropped"] == 1


def test_records_the_user_chose_to_drop_are_not_a_loss_for_flush(make_logger: MakeLogger) -> None:
    """A record before_send dropped is counted, and flush() still says True."""
    logger, _ = make_logger(before_send=lambda record: None, spool_dir=False)
    logger.log_prompt("in", "out")
    assert _adds_up(logger)["dropped"]["before_send"] == 1
    assert logger.flush(timeout=5)


@pytest.mark.parametrize("spool", [False, True])
def test_a_batch_shutdown_gives_up_on_says_why(
    make_logger: MakeLogger, tmp_path: Path, caplog: pytest.LogCaptureFixture, spool: bool
) -> None:
    """A batch still in flight at shutdown's deadline is spooled (shutdown() True), or
    dropped (False); either says "still queued at shutdown"."""
    release = threading.Event()

    def hangs(method: str, path: str, **kw: Any) -> Any:
        release.wait(10)
        raise RuntimeError("too late")

    logger, _ = make_logger(hangs, spool_dir=tmp_path if spool else False)
    try:
        assert logger.log_prompt("in", "out")
        with caplog.at_level(logging.WARNING, logger="banyan"):
            assert logger.shutdown(timeout=0.3) is spool
        stats = _adds_up(logger)
    finally:
        release.set()
    assert stats["spooled" if spool else "logs_dropped"] == 1
    assert "(shutdown: still queued at shutdown)" in caplog.messages[0]


def test_a_backlog_from_an_earlier_process_starts_the_flusher_at_once(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """A logger whose spool directory holds segments replays them even if it never logs."""
    first, _ = make_logger(*[status(503)] * 100, max_retries=0, spool_dir=tmp_path)
    assert first.log_prompt("in", "out")
    assert first.flush(timeout=10)
    first.shutdown(timeout=0.2)
    assert first.get_stats()["spool_handed_over"] == 1
    empty, _ = make_logger(spool_dir=tmp_path / "empty")
    assert empty._idle
    second, _ = make_logger(spool_dir=tmp_path)
    assert not second._idle


def test_a_record_the_spool_evicted_is_a_loss_for_the_next_flush(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """flush() adds the spool's evictions to the drops since the last flush (one of each:
    two losses, not none)."""
    logger, _ = make_logger(spool_dir=tmp_path)
    assert logger.flush(timeout=5)
    spool = logger._spool
    assert spool is not None
    spool.evicted += 1
    logger._pipeline.ledger.drop(DropReason.DEADLINE)
    assert logger.flush(timeout=5) is False
    assert logger.flush(timeout=5)


def test_only_a_close_on_another_thread_is_waited_for(make_logger: MakeLogger) -> None:
    """wait_closed() and flush() wait for a close() under way on another thread, up to their
    timeout; an open logger's wait_closed() returns at once."""
    logger, _ = make_logger(spool_dir=False)
    pipeline = logger._pipeline
    assert pipeline.wait_closed(5.0)
    pipeline.closed, pipeline._closer = True, -1  # another thread's close, not finished
    try:
        assert not pipeline.wait_closed(0.05)
        assert not pipeline.flush(time.monotonic() + 0.05)
    finally:
        pipeline.closed, pipeline._closer = False, None


def test_close_does_not_wait_for_itself(make_logger: MakeLogger) -> None:
    """Inside close() (a signal handler on the closing thread), wait_closed() returns True
    at once instead of waiting for the close it interrupts."""
    logger, _ = make_logger(spool_dir=False)
    pipeline = logger._pipeline
    stop, inside = pipeline.flusher.stop, list[bool]()

    def interrupted(timeout: float) -> bool:
        inside.append(pipeline.wait_closed(5.0))
        return stop(timeout)

    pipeline.flusher.stop = interrupted  # type: ignore[method-assign]
    assert logger.shutdown(timeout=60)
    assert inside == [True]


def test_a_spill_still_under_way_at_shutdown_is_not_clean(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """A spill still under way when the spool closes may be lost: close() says False."""
    logger, _ = make_logger(spool_dir=tmp_path / "spool")
    pipeline = logger._pipeline
    pipeline.ledger.spills = lambda: True  # type: ignore[method-assign]
    assert not pipeline._give_up([], True, pipeline._flush_mark)
    pipeline.ledger.spills = lambda: False  # type: ignore[method-assign]
    assert pipeline._give_up([], True, pipeline._flush_mark)
