"""The fork hook itself resets a logger in the child, before the child calls anything."""

from __future__ import annotations

import os

from prockit import fork_child

import banyan
from banyan import _default, _fork


def test_the_fork_hook_resets_loggers_before_any_call() -> None:
    """Right after fork, with no logger call yet (so no wiped-page fallback), the child's
    logger has its own pid, an empty ring, new ids, stats and transport; module callbacks ran."""
    logger = banyan.PromptStackLogger(
        api_key="psk_unit", base_url="http://127.0.0.1:9", spool_dir=False, max_retries=0
    )
    logger._idle = False  # no flusher: the parent's records stay queued
    for i in range(5):
        assert logger.log_prompt(f"parent {i}", "o")
    parent_id = logger._next_id().rsplit("-", 1)[0]
    parent = (logger._stats, logger._transport, logger._flusher, _default._unconfigured)

    def child() -> int:
        checks = [
            logger._pid == os.getpid(),
            logger._here[0] == int(_fork.WIPES),
            len(logger._flusher.ring) == 0,
            logger._next_id().rsplit("-", 1)[0] != parent_id,
            logger._stats is not parent[0],
            logger._transport is not parent[1],
            logger._flusher is not parent[2],
            _default._unconfigured is not parent[3],
        ]
        failed = [n for n, ok in enumerate(checks) if not ok]
        return 10 + failed[0] if failed else 0

    assert fork_child(child) == 0
    assert len(logger._flusher.ring) == 5
    logger.shutdown(timeout=2)


def test_a_wiped_cell_reads_zero_in_a_forked_child() -> None:
    """The kernel zeroes a wiped cell in the child (a plain cell keeps its value)."""
    wiped = _fork.wiped_cell()
    wiped[0] = 7
    plain = memoryview(bytearray(8)).cast("q")
    plain[0] = 7
    expected = 0 if _fork.WIPES else 7
    assert fork_child(lambda: 0 if (wiped[0], plain[0]) == (expected, 7) else 1) == 0
    assert wiped[0] == 7
