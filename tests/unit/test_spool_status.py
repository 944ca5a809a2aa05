"""Spool.status(): every field, on a fresh spool and on one holding sealed segments."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from banyan import _spooldir
from banyan._spool import Spool

COUNTERS = {"spooled": 0, "replayed": 0, "corrupt_frames": 0, "corrupt_bytes": 0, "lost": 0,
            "evicted": 0, "purged": 0, "dropped": {}, "last_error": None}  # fmt: skip


def test_a_fresh_spool_reports_nothing(tmp_path: Path) -> None:
    """No segment, no counts, no error, no age."""
    spool = Spool(tmp_path / "s", segment_bytes=16 << 10)
    try:
        assert spool.status() == {
            "directory": str(tmp_path / "s"), "server": None, "segments": 0, "records": 0,
            "bytes": 0, "bytes_used": 0, "owners": [], "oldest_age_s": None,
            "handed_over": 0, **COUNTERS,
        }  # fmt: skip
    finally:
        spool.close()


def test_status_counts_sealed_segments_and_ages_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sealed segments are counted with their records, bytes and creator; the age is the
    oldest segment's, read with the clock fixed."""
    spool = Spool(tmp_path / "s", segment_bytes=16 << 10)
    try:
        for n in range(3):
            assert spool.append(b"record-%d" % n)
        spool.seal()
        [name] = _spooldir.names(spool.directory)
        created = _spooldir.created_ns(name)
        monkeypatch.setattr(time, "time_ns", lambda: created + 250_000_000)
        assert spool.status() == {
            "directory": str(tmp_path / "s"), "server": None, "segments": 1, "records": 3,
            "bytes": 16 << 10, "bytes_used": 124, "owners": [os.getpid()],
            "oldest_age_s": 0.25, "handed_over": 0, **COUNTERS, "spooled": 3,
        }  # fmt: skip
    finally:
        spool.close()
