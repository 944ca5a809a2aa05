"""Records shutdown() meets half-way (spilling, sent on the caller's thread): counted once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fakes import FakeResponse, MakeLogger, status
from test_prompts_cache import wait_for

import banyan


def _spilling_when_abandoned(make_logger: MakeLogger, spool: Path, hold: float) -> Any:
    """A logger whose worker retries 5 records (503s) and is spilling them, stretched to
    ``hold`` seconds, when close() gives up on what is in flight."""
    logger, _ = make_logger(*[status(503)] * 1000, max_retries=1000, retry_delay=5.0,
                            spool_dir=spool)  # fmt: skip
    ledger, flusher = logger._pipeline.ledger, logger._pipeline.flusher
    entered = threading.Event()
    real_spilling, real_abandon = ledger.spilling, flusher.abandon

    def spilling(records: Any, part: Any) -> bool:
        ok = real_spilling(records, part)
        entered.set()
        time.sleep(hold)  # the spool write of a large batch: milliseconds, here stretched
        return ok

    def abandon(timeout: float = 0.0) -> Any:
        entered.wait(3)
        return real_abandon(timeout)

    ledger.spilling = spilling  # type: ignore[method-assign]
    flusher.abandon = abandon  # type: ignore[method-assign]
    for i in range(5):
        logger.log_prompt(f"in {i}", "out")
    wait_for(lambda: logger.get_stats()["in_flight"] == 5)
    return logger


def _dropped(logger: banyan.PromptStackLogger) -> dict[str, int]:
    dropped: dict[str, int] = logger.get_stats()["dropped"]
    return dropped


def test_a_batch_spilling_when_shutdown_gives_up_is_spooled_before_the_spool_closes(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """A batch the worker spills as shutdown() gives up is spooled, not dropped as closed."""
    logger = _spilling_when_abandoned(make_logger, tmp_path, 0.2)
    settled = logger.shutdown(timeout=0.3)
    wait_for(lambda: logger.get_stats()["in_flight"] == 0)
    stats = logger.get_stats()
    assert (stats["spooled_pending"], _dropped(logger)["closed"]) == (5, 0), (settled, stats)


def test_in_flight_is_zero_when_shutdown_returns(make_logger: MakeLogger, tmp_path: Path) -> None:
    """shutdown() returns with nothing in flight, a batch that was spilling included."""
    logger = _spilling_when_abandoned(make_logger, tmp_path, 0.5)
    logger.shutdown(timeout=0.3)
    assert logger.get_stats()["in_flight"] == 0


def test_a_blocking_send_in_progress_at_shutdown_is_counted_sent_not_given_up(
    make_logger: MakeLogger,
) -> None:
    """A log_prompt(blocking=True) running when shutdown() gives up is its caller's: sent once."""
    gate = threading.Event()

    def held(method: str, path: str, **kw: Any) -> Any:
        gate.wait(10)
        return FakeResponse({"accepted": 1, "duplicates": 0})

    logger, _ = make_logger(held, spool_dir=False)
    out: dict[str, bool] = {}
    caller = threading.Thread(
        target=lambda: out.setdefault("ok", logger.log_prompt("in", "out", blocking=True))
    )
    caller.start()
    wait_for(lambda: logger.get_stats()["in_flight"] == 1)
    settled = logger.shutdown(timeout=0.2)
    gate.set()
    caller.join(5)
    stats = logger.get_stats()
    assert out["ok"] is True
    assert (settled, stats["logs_sent"], _dropped(logger)["shutdown"]) == (True, 1, 0)
