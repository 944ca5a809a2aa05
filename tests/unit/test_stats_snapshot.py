"""get_stats()'s dictionary, field by field, and how drops are counted and warned."""

from __future__ import annotations

import logging

import pytest

from banyan._ledger import Ledger
from banyan._ring import Ring
from banyan._stats import DropReason, SpoolCounts, Stats

ZERO_DROPS = {reason.value: 0 for reason in DropReason}


def test_a_fresh_snapshot_is_all_zeros() -> None:
    """Nothing happened: every counter 0, no error, no HTTP version, nothing dropped."""
    assert Ledger().view() == {
        "logs_queued": 0, "logs_sent": 0, "logs_dropped": 0, "dropped": ZERO_DROPS,
        "queue_size": 0, "queue_bytes": 0, "in_flight": 0, "duplicates": 0, "retries": 0,
        "batches_sent": 0, "bytes_sent": 0, "spooled": 0, "replayed": 0, "spooled_pending": 0,
        "spool_evicted": 0, "spool_corrupt_frames": 0, "spool_lost": 0, "spool_segments": 0,
        "spool_bytes": 0, "delivered_after_shutdown": 0, "logs_skipped": 0,
        "experiment_sticky_missing": 0, "prompt_errors": 0, "http_version": None,
        "last_error": None, "possible_duplicates": 0, "legacy_concurrency": 0,
    }  # fmt: skip


def test_a_snapshot_merges_the_rings_and_the_spools_counters() -> None:
    """Each field comes from its counter; drops add the ring's and the spool's; records
    that went straight to the spool count as queued; pending is spooled minus what left."""
    stats = Ledger()
    ring = Ring(10**6, 10**6, 10**6, lambda: None)
    for _ in range(40):
        ring.push(b"x" * 100)
    stats.taken, stats.replayed_records = 460, 400
    stats.add(sent=11, duplicates=2, retries=3, batches_sent=4, bytes_sent=5, direct=6,
              spooled_from_queue=7, skipped=8, sticky_missing=9, prompt_errors=10,
              delivered_after_shutdown=12)  # fmt: skip
    stats.drop(DropReason.QUEUE_FULL, 100)
    stats.drop(DropReason.QUEUE_FULL, 50, entry=True)
    stats.drop(DropReason.SPOOL_EVICTED, 200)
    stats.drop(DropReason.SPOOL_CORRUPT, 300)
    stats.drop(DropReason.ENCODE_ERROR, 13, "bad", entry=True)
    stats.http_version = "HTTP/2"
    spool = SpoolCounts(spooled=1000, replayed=400, evicted=30, lost=20, corrupt_frames=5,
                        segments=3, bytes=4096)  # fmt: skip
    snapshot = stats.view(ring, spool)
    dropped = {**ZERO_DROPS, "queue_full": 150, "spool_evicted": 230, "spool_corrupt": 320,
               "encode_error": 13}  # fmt: skip
    assert snapshot == {
        "logs_queued": 460 + 40 + 6 + 50 + 13 + (1000 - 7), "logs_sent": 11,
        "logs_dropped": sum(dropped.values()), "dropped": dropped, "queue_size": 40,
        "queue_bytes": 4000, "in_flight": 0, "duplicates": 2, "retries": 3,
        "batches_sent": 4, "bytes_sent": 5, "spooled": 1000, "replayed": 400,
        "spooled_pending": 1000 - 400 - 30 - 20, "spool_evicted": 30,
        "spool_corrupt_frames": 5, "spool_lost": 20, "spool_segments": 3, "spool_bytes": 4096,
        "delivered_after_shutdown": 12, "logs_skipped": 8, "experiment_sticky_missing": 9,
        "prompt_errors": 10, "http_version": "HTTP/2", "last_error": "bad",
        "possible_duplicates": 0, "legacy_concurrency": 0,
    }  # fmt: skip


def test_drops_are_warned_once_per_reason_with_their_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Entry drops and undelivered batches warn once per reason, naming reason and error;
    the error is kept as last_error and every drop counted."""
    stats = Stats()
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert stats.drop_entry(DropReason.ENCODE_ERROR, ValueError("odd")) is False
        stats.drop_entry(DropReason.ENCODE_ERROR, ValueError("again"))
        stats.drop_entry(DropReason.INTERNAL_ERROR, ValueError("bug"))
        stats.drop_undelivered(3, DropReason.DEADLINE, "late")
        stats.drop_undelivered(2, DropReason.DEADLINE, "later")
        stats.drop_undelivered(4, DropReason.SHUTDOWN, "stopping")
    assert caplog.messages == [
        "banyan: a log record was dropped (encode_error: odd); further drops are counted",
        "banyan: a log record was dropped (internal_error: bug); further drops are counted",
        "banyan: 3 log record(s) could not be delivered (deadline: late); "
        "further losses are counted in get_stats()",
        "banyan: 4 log record(s) could not be delivered (shutdown: stopping); "
        "further losses are counted in get_stats()",
    ]
    assert stats.last_error == "stopping"
    counted = {reason: stats.dropped[reason] for reason in DropReason if stats.dropped[reason]}
    assert counted == {DropReason.ENCODE_ERROR: 2, DropReason.INTERNAL_ERROR: 1,
                       DropReason.DEADLINE: 5, DropReason.SHUTDOWN: 4}  # fmt: skip
    assert stats.entry_dropped == 3


def test_a_merge_keeps_the_http_version_unless_the_segment_had_one() -> None:
    """Merging a replayed segment's counters keeps the last known HTTP version and error."""
    live, quiet, spoken = Ledger(), Stats(), Stats()
    live.http_version = "HTTP/1.1"
    live.error("old")
    live.replayed(0, quiet)
    assert (live.http_version, live.last_error) == ("HTTP/1.1", "old")
    spoken.http_version = "HTTP/2"
    spoken.error("new")
    live.replayed(0, spoken)
    assert (live.http_version, live.last_error) == ("HTTP/2", "new")
