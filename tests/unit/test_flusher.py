"""The generic flusher core: deadlines, flush semantics, sync mode, blocking sends."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeResponse, MakeLogger, tallied

from banyan._flusher import Flusher
from banyan._record import Encoded


def core(export: object, background: bool = True, workers: int = 2) -> Flusher:
    return Flusher(
        tallied(export),
        lambda records, exc: None,
        max_queue_bytes=10**6, wake_records=10, wake_bytes=10**6, batch_records=4,
        batch_bytes=10**6, interval=0.05, workers=workers, background=background,
    )  # fmt: skip


def test_flush_returns_by_its_deadline_when_export_hangs() -> None:
    """flush(timeout) returns False within the deadline if a batch never settles."""
    gate = threading.Event()
    flusher = core(lambda records, deadline, stop: gate.wait(10))
    flusher.ring.push(b"r")
    flusher.start()
    start = time.monotonic()
    assert flusher.flush(0.3) is False
    assert time.monotonic() - start >= 0.29
    assert flusher.in_flight == 1  # returned with the export still hung (10 s), not after it
    gate.set()
    assert flusher.flush(2)
    assert flusher.stop(2)


def test_stop_is_bounded_by_its_timeout() -> None:
    """stop(timeout) returns in time even while a worker is stuck in export."""
    gate = threading.Event()
    flusher = core(lambda records, deadline, stop: gate.wait(10))
    flusher.ring.push(b"r")
    flusher.start()
    time.sleep(0.1)
    start = time.monotonic()
    assert flusher.stop(0.2) is False
    assert time.monotonic() - start >= 0.19
    assert flusher.in_flight == 1  # returned with the export still hung (10 s), not after it
    gate.set()


def test_flush_waits_for_records_logged_before_the_call() -> None:
    """Every record pushed before flush() has been exported when it returns True."""
    seen: list[bytes] = []

    def export(records: list[bytes], deadline: object, stop: object) -> bool:
        seen.extend(records)
        return True

    flusher = core(export)
    for n in range(25):
        flusher.ring.push(str(n).encode())
    flusher.start()
    assert flusher.flush(2)
    assert sorted(seen, key=int) == [str(n).encode() for n in range(25)]
    assert flusher.in_flight == 0
    assert flusher.stop(2)


def test_workers_grow_with_a_backlog_up_to_the_limit() -> None:
    """A slow server gets up to `workers` batches in flight at once."""
    active: list[int] = []
    lock = threading.Lock()
    current = [0]

    def slow(records: list[bytes], deadline: object, stop: object) -> bool:
        with lock:
            current[0] += 1
            active.append(current[0])
        time.sleep(0.05)
        with lock:
            current[0] -= 1
        return True

    flusher = core(slow, workers=3)
    for n in range(200):
        flusher.ring.push(str(n).encode())
    flusher.start()
    assert flusher.flush(10)
    assert max(active) >= 2
    assert max(active) <= 3
    assert flusher.stop(2)


def test_sync_mode_sends_on_the_callers_thread(make_logger: MakeLogger) -> None:
    """background_thread=False: no flusher thread; thresholds and flush send inline."""
    logger, fake = make_logger(background_thread=False, batch_size=5)
    before = {t.name for t in threading.enumerate()}
    for n in range(12):
        logger.log_prompt(f"i{n}", "o")
    assert len(fake.calls) == 2  # the 5th and the 10th record crossed the threshold
    assert logger.flush(2)
    assert logger.get_stats()["logs_sent"] == 12
    assert not {t.name for t in threading.enumerate()} - before


def test_blocking_log_sends_now_and_reports_delivery(make_logger: MakeLogger) -> None:
    """log_prompt(blocking=True) returns True once the server took the record, else False."""
    logger, fake = make_logger(FakeResponse({"accepted": 1, "duplicates": 0}))
    assert logger.log_prompt("i", "o", blocking=True) is True
    assert len(fake.calls) == 1
    fake.script.append(FakeResponse({"accepted": 0, "duplicates": 0}))
    assert logger.log_prompt("i", "o", blocking=True) is False
    stats = logger.get_stats()
    assert (stats["logs_queued"], stats["logs_sent"], stats["dropped"]["rejected"]) == (2, 1, 1)


def test_shutdown_is_idempotent_and_drops_the_leftovers(make_logger: MakeLogger) -> None:
    """Without a spool, shutdown() twice is fine; what it could not send counts as 'shutdown'."""
    gate = threading.Event()
    logger, _fake = make_logger(
        lambda *a, **k: gate.wait(5) and FakeResponse({"accepted": 1}), spool_dir=False
    )
    logger.log_prompt("i", "o", blocking=False)
    time.sleep(0.05)
    logger.flush(0.01)
    for n in range(5):
        logger.log_prompt(f"later {n}", "o")
    worker = logger._flusher._threads[0]
    assert logger.shutdown(timeout=0.3) is False
    assert worker.is_alive()  # returned with the export still held (5 s), not after it
    assert logger.shutdown(timeout=0.3) is True
    gate.set()
    assert logger.get_stats()["dropped"]["shutdown"] >= 1


def test_an_internal_error_does_not_end_the_flusher_thread() -> None:
    """An exception outside export (a bug of ours) is reported and the thread carries on."""
    seen: list[Encoded] = []
    errors: list[BaseException] = []

    def export(records: list[Encoded], deadline: object, stop: object) -> bool:
        seen.extend(records)
        return True

    flusher = Flusher(
        tallied(export),
        lambda records, exc: errors.append(exc),
        max_queue_bytes=10**6, wake_records=10, wake_bytes=10**6, batch_records=4,
        batch_bytes=10**6, interval=0.05, workers=1, background=True,
    )  # fmt: skip
    take = flusher.ring.take
    calls = [0]

    def failing_once(max_records: int, max_bytes: int) -> tuple[int, list[Encoded]]:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("boom")
        return take(max_records, max_bytes)

    flusher.ring.take = failing_once  # type: ignore[method-assign]
    flusher.ring.push(b"r")
    flusher.start()
    assert flusher.flush(2)
    assert seen == [b"r"]
    assert [str(e) for e in errors] == ["boom"]
    assert flusher.stop(2)


def test_a_flush_during_shutdown_waits_until_the_rest_is_spooled(
    make_logger: MakeLogger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flush() from another thread while shutdown() spools what it took out of the queue
    returns True only once those records are in the spool."""
    logger, _fake = make_logger(spool_dir=str(tmp_path))
    monkeypatch.setattr(logger._flusher, "start", lambda: None)  # nothing is ever sent
    for n in range(5):
        assert logger.log_prompt(f"i {n}", "o")
    spooling = logger._spooling
    assert spooling is not None
    keeping, real_keep = threading.Event(), spooling._keep

    def slow_keep(*args: Any) -> Any:
        keeping.set()
        time.sleep(0.3)
        return real_keep(*args)

    monkeypatch.setattr(spooling, "_keep", slow_keep)
    closer = threading.Thread(target=logger.shutdown, args=(0.2,))
    closer.start()
    try:
        assert keeping.wait(10)
        assert logger.flush(10) is True
        assert logger.get_stats()["spooled"] == 5
    finally:
        closer.join(10)


FLUSH_IN_SHUTDOWN = """
import signal, socket, banyan
silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
url = f"http://127.0.0.1:{silent.getsockname()[1]}"
logger = banyan.PromptStackLogger(api_key="psk_unit", base_url=url, spool_dir=False, timeout=1,
                                  max_retries=0)
logger.log_prompt("i", "o")
flushed = []
signal.signal(signal.SIGALRM, lambda *_: flushed.append(logger.flush(timeout=None)))
signal.setitimer(signal.ITIMER_REAL, 0.3)
logger.shutdown(timeout=2)
signal.setitimer(signal.ITIMER_REAL, 0)
print(flushed)
"""


def test_a_flush_from_a_signal_handler_during_shutdown_does_not_wait_for_it() -> None:
    """flush(None) in a handler that interrupted shutdown() on the same thread returns: it
    cannot wait for the shutdown it interrupted."""
    done = subprocess.run(
        [sys.executable, "-c", FLUSH_IN_SHUTDOWN],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("[True]", "[False]")  # the handler ran inside shutdown


@pytest.mark.parametrize("durability", ["buffered", "durable"])
def test_flush_after_shutdown_reports_nothing_pending(
    make_logger: MakeLogger, tmp_path: Path, durability: str
) -> None:
    """Once shutdown() is over, flush() has nothing to wait for in either mode: True (until
    a later log_prompt counts a `closed` drop, which makes the next flush False)."""
    logger, _fake = make_logger(FakeResponse({"accepted": 1}), durability=durability,
                                spool_dir=str(tmp_path))  # fmt: skip
    assert logger.log_prompt("i", "o")
    logger.shutdown(timeout=5)
    assert logger.flush(timeout=1) is True
    assert logger.log_prompt("late", "o") is False
    assert logger.flush(timeout=1) is False
