"""The spool's sync policy: "interval" fdatasyncs, "always" msyncs per record, "none" neither."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

import banyan
from banyan._spool import Spool
from banyan.testing import capture

SEGMENT = 16 << 10
RECORD = b"r" * 1000


class Syncs:
    """Counts msyncs (any mmap's flush) and which files were fdatasync'ed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.msyncs = 0
        self.datasynced: list[str] = []
        counts = self

        class CountingMmap(mmap.mmap):
            def flush(self, *args: int) -> None:
                counts.msyncs += 1
                super().flush(*args)

        real: Callable[[int], None] = os.fdatasync
        monkeypatch.setattr(mmap, "mmap", CountingMmap)
        monkeypatch.setattr(os, "fdatasync", self._wrap(real))

    def _wrap(self, real: Callable[[int], None]) -> Callable[[int], None]:
        def fdatasync(fd: int) -> None:
            self.datasynced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
            real(fd)

        return fdatasync


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    return Syncs(monkeypatch)


def segment_names(directory: Path) -> set[str]:
    return {path.name for path in directory.glob("*.seg")}


def test_interval_fdatasyncs_every_segment_at_most_once_an_interval(
    tmp_path: Path, syncs: Syncs
) -> None:
    """maybe_sync() fdatasyncs each sealed segment and the active one, then waits an interval."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, sync="interval", sync_interval=3600)
    for _ in range(40):  # three segments: two sealed, one active
        assert s.append(RECORD)
    s.maybe_sync()
    assert sorted(syncs.datasynced) == sorted(segment_names(tmp_path))
    assert len(syncs.datasynced) == 3
    assert s.append(RECORD)
    s.maybe_sync()  # within the interval: nothing
    assert (len(syncs.datasynced), syncs.msyncs) == (3, 0)
    s.close()


def test_always_msyncs_after_every_append(tmp_path: Path, syncs: Syncs) -> None:
    """Each append, rollovers included, msyncs once before it returns; no fdatasync."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, sync="always")
    for n in range(1, 41):
        assert s.append(RECORD)
        assert syncs.msyncs == n
    s.maybe_sync()
    s.close()
    assert len(segment_names(tmp_path)) == 3
    assert (syncs.msyncs, syncs.datasynced) == (40, [])


def test_none_makes_no_sync_call(tmp_path: Path, syncs: Syncs) -> None:
    """sync="none": neither appends, maybe_sync nor close sync anything."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, sync="none", sync_interval=0)
    for _ in range(40):
        assert s.append(RECORD)
    s.maybe_sync()
    s.close()
    assert (syncs.msyncs, syncs.datasynced) == (0, [])


@pytest.mark.parametrize(("mode", "msyncs", "datasync"), [
    ("none", 0, False), ("interval", 0, True), ("always", 50, False),
])  # fmt: skip
def test_logger_spool_sync_option_reaches_the_disk(
    tmp_path: Path,
    syncs: Syncs,
    mode: Literal["none", "interval", "always"],
    msyncs: int,
    datasync: bool,
) -> None:
    """A durable logger's spool_sync: "always" msyncs per log_prompt, "interval" has the
    flusher fdatasync the segment, "none" syncs nothing; all 50 records are delivered."""
    with capture(durability="durable", spool_dir=str(tmp_path), spool_sync=mode) as backend:
        for i in range(50):
            assert banyan.log_prompt(f"r {i}", "o")
        assert syncs.msyncs == msyncs
        assert len(backend.logged) == 50
    assert any(name.endswith(".seg") for name in syncs.datasynced) is datasync
