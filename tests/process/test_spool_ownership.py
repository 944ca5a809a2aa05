"""Spool ownership across processes: a live process keeps every segment it counts as its own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import pytest
from prockit import wait_for

import banyan

#: Nothing listens here: every delivery fails at once.
DOWN = "http://127.0.0.1:9"


def spool_cli(*args: str) -> str:
    """``banyan spool ...`` in another process; its stdout."""
    argv = [sys.executable, "-m", "banyan", "spool", *args]
    done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    return done.stdout


@pytest.mark.parametrize("durability", ["buffered", "durable"])
def test_purge_beside_a_live_process_whose_replays_fail_deletes_nothing(
    tmp_path: Path, durability: Literal["buffered", "durable"]
) -> None:
    """Issue 14 item 1: failed replays keep the segment locked, so purge skips it."""
    spool = tmp_path / "sp"
    logger = banyan.PromptStackLogger(
        "psk_x_key_1", DOWN, spool_dir=str(spool), max_retries=0, timeout=1,
        flush_interval=0.05, durability=durability,
    )  # fmt: skip
    try:
        assert all(logger.log_prompt(input="p", output="o") for _ in range(2000))
        wait_for(lambda: logger.get_stats()["spooled"] == 2000, 30, "the outage spills all 2000")
        # Several replays of the segment fail meanwhile (the replayer backs off from 50 ms).
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert "purged 0 record(s)" in spool_cli("purge", "--dir", str(spool))
        stats = logger.get_stats()
        assert (stats["spooled_pending"], stats["logs_dropped"]) == (2000, 0)
        assert logger.flush(5)
    finally:
        logger.shutdown(0)
    assert "purged 2000 record(s)" in spool_cli("purge", "--dir", str(spool))
