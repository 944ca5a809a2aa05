"""Waiting, bounded, until a logger has delivered what it spooled: for tests and stress."""

from __future__ import annotations

import time

import banyan


def drain(logger: banyan.PromptStackLogger, timeout: float) -> bool:
    """Flush, then wait (bounded) until the spool is replayed; whether it emptied."""
    deadline = time.monotonic() + timeout
    logger.flush(timeout)
    while logger.get_stats()["spool_segments"] and time.monotonic() < deadline:
        logger.flush(max(0.0, min(1.0, deadline - time.monotonic())))
        time.sleep(0.05)
    return not logger.get_stats()["spool_segments"]
