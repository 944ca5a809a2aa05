"""get_stats()'s identity in every snapshot, not only at rest (issue 15's "done when")."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultproxy import Fault
from test_spool_replay import invariant

import banyan

if TYPE_CHECKING:
    from faultproxy import FaultProxy
    from serverproc import Server


class Watcher(threading.Thread):
    """Snapshots ``logger.get_stats()`` back to back until stopped; keeps the unbalanced ones."""

    def __init__(self, logger: banyan.PromptStackLogger) -> None:
        super().__init__(name="stats-watcher", daemon=True)
        self.logger = logger
        self.done = threading.Event()
        self.snapshots = 0
        self.unbalanced: list[dict[str, Any]] = []

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.join(10)

    def run(self) -> None:
        while not self.done.is_set():
            stats = dict(self.logger.get_stats())
            self.snapshots += 1
            try:
                invariant(stats)
            except AssertionError:
                self.unbalanced.append(stats)


def test_the_identity_holds_in_every_snapshot_through_outages_spooling_and_shutdown(
    server: Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Snapshots taken continuously from another thread while batches meet 503s and resets
    (retried, then spooled), a full ring overflows into the spool, the spool replays, and
    shutdown spools the batch its deadline catches in flight: logs_queued == logs_sent +
    logs_dropped + queue_size + in_flight + spooled_pending in every one."""
    logger = banyan.PromptStackLogger(
        server.api_key, proxy.url, http2=False, retry_delay=0.01, max_retries=1,
        flush_interval=0.02, batch_size=20, max_queue_bytes=32 << 10,
        spool_dir=str(tmp_path / "spool"),
    )  # fmt: skip
    watcher = Watcher(logger)
    watcher.start()
    try:
        proxy.push("status", times=40, status=503)
        proxy.push("reset", times=10)
        for i in range(3000):
            logger.log_prompt(f"in {i}", "o" * 100)
        logger.flush(30)
        proxy.always.append(Fault("hold"))
        for i in range(200):
            logger.log_prompt(f"late {i}", "o" * 100)
        deadline = time.monotonic() + 10
        while not logger.get_stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.005)
        logger.shutdown(timeout=0.5)
        proxy.always.clear()
        proxy.release.set()
        time.sleep(0.3)
    finally:
        watcher.done.set()
        watcher.join(10)
        logger.shutdown(timeout=5)
    stats = logger.get_stats()
    assert stats["logs_queued"] == 3200
    assert stats["spooled"] > 0
    assert watcher.snapshots > 100
    assert watcher.unbalanced == []
