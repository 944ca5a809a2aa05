"""The disk spool in one process: format, corruption, bounds, ownership between instances."""

from __future__ import annotations

import errno
import os
import stat
import struct
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banyan import _segment, _spooldir
from banyan._config import build
from banyan._delivery import Delivery
from banyan._exceptions import AuthenticationError, HTTPStatusError
from banyan._ledger import Ledger
from banyan._replay import Replayer
from banyan._segment import FRAME_SIZE, HEADER_SIZE
from banyan._spool import Spool
from banyan._stats import DropReason, Stats

SEGMENT = 16 << 10
PAD = b"p" * 1190


def rec(i: int) -> bytes:
    """A 1.2 KB record carrying its sequence number."""
    return struct.pack("<Q", i) + PAD


def num(record: bytes) -> int:
    return int(struct.unpack_from("<Q", record)[0])


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    """A spool with small segments (about 13 records each)."""
    s = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    yield s
    s.close()


def fill(s: Spool, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        assert s.append(rec(i))
    s.seal()


def replay_all(s: Spool) -> list[int]:
    out = []
    while (seg := s.claim()) is not None:
        out += [num(r) for r in seg.records()]
        s.ack(seg)
    return out


def segment_files(s: Spool) -> list[Path]:
    return sorted(s.directory.glob("*.seg"))


def frame_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets, pos = [], HEADER_SIZE
    end = struct.unpack_from("<Q", data, 24)[0]
    while pos < end:
        offsets.append(pos)
        pos += FRAME_SIZE + struct.unpack_from("<I", data, pos + 4)[0]
    return offsets


def orphan(s: Spool, n: int) -> Path:
    """Write ``n`` records in one segment and unlock it, as a dead writer would."""
    fill(s, n)
    s.close()
    return segment_files(s)[-1]


def test_round_trip(spool: Spool) -> None:
    """Appended records come back from claim/records in order, byte for byte."""
    records = [rec(i) for i in range(5)] + [b"", b"\xc1BNY" * 10]
    assert all(spool.append(r) for r in records)
    spool.seal()
    seg = spool.claim()
    assert seg is not None
    assert list(seg.records()) == records
    spool.ack(seg)
    assert spool.claim() is None
    assert spool.spooled == spool.replayed == 7


def test_an_append_from_inside_an_append_is_refused_without_harm(spool: Spool) -> None:
    """A signal handler appending in the middle of an append (the lock is re-entrant) is
    refused and counted, and the interrupted append completes. The profiler hook stands in
    for the handler: it runs where one could, right after a C call."""
    nested: list[bool] = []

    def handler(frame: Any, event: str, arg: Any) -> None:
        if event == "c_return" and arg is zlib.crc32 and not nested:
            nested.append(spool.append(rec(1)))

    sys.setprofile(handler)
    try:
        assert spool.append(rec(0))
    finally:
        sys.setprofile(None)
    assert nested == [False]
    assert spool.dropped == {"spool_error": 1}
    spool.seal()
    assert replay_all(spool) == [0]
    assert spool.corrupt_frames == 0


def test_many_segments_replay_oldest_first(spool: Spool) -> None:
    """Records spread over many segments replay as one gapless sequence."""
    fill(spool, 200)
    assert len(segment_files(spool)) >= 15
    assert replay_all(spool) == list(range(200))


def test_ack_deletes_and_put_back_keeps_it_held_for_the_next_claim(spool: Spool) -> None:
    """ack deletes the file; put_back keeps it locked: only this spool claims it again."""
    fill(spool, 3)
    seg = spool.claim()
    assert seg is not None
    spool.put_back(seg)
    other = Spool(spool.directory, segment_bytes=SEGMENT)
    assert other.claim() is None
    assert other.purge() == 0
    other.close()
    again = spool.claim()
    assert again is not None
    assert again.name == seg.name
    assert spool.ack(again) is True
    assert segment_files(spool) == []
    assert spool.ack(again) is False  # a second ack is a no-op


def test_active_segment_is_not_claimed_until_sealed(spool: Spool) -> None:
    """claim never returns the segment this process is still appending to."""
    assert spool.append(rec(0))
    assert spool.claim() is None
    spool.seal()
    assert spool.claim() is not None


def test_append_many(spool: Spool) -> None:
    """append_many accepts a batch across segment boundaries and reports the count."""
    assert spool.append_many([rec(i) for i in range(40)]) == 40
    spool.seal()
    assert replay_all(spool) == list(range(40))


def test_truncated_tail_is_counted(spool: Spool) -> None:
    """A segment cut mid-frame replays its whole frames and counts the torn one."""
    path = orphan(spool, 10)
    offsets = frame_offsets(path)
    os.truncate(path, offsets[7] + 100)
    s = Spool(spool.directory, segment_bytes=SEGMENT)
    seg = s.claim()
    assert seg is not None
    assert [num(r) for r in seg.records()] == list(range(7))
    assert seg.damage.frames == 1
    assert seg.lost == 3
    s.ack(seg)
    assert s.corrupt_frames == 1
    assert s.lost == 3
    s.close()


@pytest.mark.parametrize("field", ["payload", "length", "marker", "crc"])
def test_flipped_bit_in_a_middle_frame_skips_only_that_frame(spool: Spool, field: str) -> None:
    """A bit flip anywhere in frame 4 loses frame 4 only; resync finds frame 5 onwards."""
    path = orphan(spool, 10)
    at = frame_offsets(path)[4] + {"marker": 1, "length": 5, "crc": 9, "payload": 300}[field]
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))
    s = Spool(spool.directory, segment_bytes=SEGMENT)
    seg = s.claim()
    assert seg is not None
    assert [num(r) for r in seg.records()] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert seg.damage.frames == 1
    s.close()


def test_garbage_header_still_yields_frames(spool: Spool) -> None:
    """An unreadable header is counted and the frames are found by scanning."""
    path = orphan(spool, 5)
    data = bytearray(path.read_bytes())
    data[:HEADER_SIZE] = os.urandom(HEADER_SIZE)
    path.write_bytes(bytes(data))
    s = Spool(spool.directory, segment_bytes=SEGMENT)
    seg = s.claim()
    assert seg is not None
    assert [num(r) for r in seg.records()] == list(range(5))
    assert seg.damage.bad_header
    assert seg.damage.frames == 0  # the zero-filled rest is unused space, not damage
    s.close()


@pytest.mark.parametrize("size", [0, 10, HEADER_SIZE, 4096])
def test_empty_or_short_file_yields_nothing(tmp_path: Path, size: int) -> None:
    """A zero-length, short or all-zero segment file replays nothing and raises nothing."""
    (tmp_path / f"{1:020d}-1-000001.seg").write_bytes(b"\0" * size)
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    seg = s.claim()
    assert seg is not None
    assert list(seg.records()) == []
    assert seg.damage.bad_header
    s.ack(seg)
    assert list(tmp_path.iterdir()) == []
    s.close()


def test_random_garbage_file_never_raises(tmp_path: Path) -> None:
    """A segment of random bytes (with fake markers and huge lengths) is counted, not fatal."""
    junk = bytearray(os.urandom(64 << 10))
    for pos in range(100, len(junk) - 12, 997):
        junk[pos : pos + 8] = b"\xc1BNY\xff\xff\xff\x7f"
    (tmp_path / f"{1:020d}-1-000001.seg").write_bytes(bytes(junk))
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    seg = s.claim()
    assert seg is not None
    assert list(seg.records()) == []
    assert seg.damage.frames == 1
    assert seg.damage.bytes == len(junk) - HEADER_SIZE
    s.close()


def test_size_limit_evicts_oldest_and_counts(tmp_path: Path) -> None:
    """Past max_total_bytes the oldest sealed segments go and their records count as evicted."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, max_total_bytes=4 * SEGMENT)
    fill(s, 130)
    assert len(segment_files(s)) <= 4
    survivors = replay_all(s)
    assert survivors == list(range(130 - len(survivors), 130))
    assert s.evicted == 130 - len(survivors) > 0
    assert s.dropped == {}
    s.close()


def test_a_rollover_while_the_spare_is_prepared_keeps_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare() zero-fills the spare without the lock; if append rolls over meanwhile (and
    allocates a segment of its own), the spare is only kept while everything fits."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, max_total_bytes=4 * SEGMENT)
    fill(s, 13 * 3 + 5)  # three full segments and a part-filled active one
    zero_fill = _spooldir.fill

    def slow_fill(fd: int, size: int) -> None:
        if not rolled:  # prepare()'s call: the logging thread fills the active segment first
            rolled.append(1)
            fill(s, 13, start=1000)
        zero_fill(fd, size)

    rolled: list[int] = []
    monkeypatch.setattr(_spooldir, "fill", slow_fill)
    s.prepare()
    assert rolled
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert total <= 4 * SEGMENT
    s.close()


def test_limit_below_one_segment_refuses(tmp_path: Path) -> None:
    """A limit smaller than one segment makes append return False, counted spool_full."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, max_total_bytes=SEGMENT - 1)
    assert not s.append(rec(0))
    assert not s.append(rec(1))  # within retry_after: refused without touching the disk
    assert s.dropped == {"spool_full": 2}
    assert "max_total_bytes" in (s.last_error or "")
    s.close()


def test_limit_with_live_owner_refuses_rather_than_evicting_its_segments(tmp_path: Path) -> None:
    """Segments another live spool holds are never evicted to make room."""
    holder = Spool(tmp_path, segment_bytes=SEGMENT)
    fill(holder, 30)  # three sealed segments, still locked by holder
    s = Spool(tmp_path, segment_bytes=SEGMENT, max_total_bytes=3 * SEGMENT)
    assert not s.append(rec(0))
    assert s.dropped == {"spool_full": 1}
    assert s.evicted == 0
    holder.close()
    s.close()


def test_unusable_directory_refuses_without_raising(tmp_path: Path) -> None:
    """A spool path under a regular file (no directory possible) refuses, counted spool_error."""
    (tmp_path / "file").write_text("x")
    s = Spool(tmp_path / "file" / "spool", segment_bytes=SEGMENT)
    assert not s.append(rec(0))
    assert s.dropped == {"spool_error": 1}
    assert s.claim() is None
    assert s.status()["segments"] == 0
    s.close()


def test_disk_full_refuses_then_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while allocating a segment: False and counted, nothing left behind, later retried."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, retry_after=0.0)
    real = os.pwrite

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    assert not s.append(rec(0))
    assert s.dropped == {"spool_error": 1}
    assert "No space" in (s.last_error or "")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "pwrite", real)
    assert s.append(rec(1))
    s.close()


def test_too_large_record_is_refused(spool: Spool) -> None:
    """A record that cannot fit in an empty segment is refused as too_large."""
    assert not spool.append(b"x" * SEGMENT)
    assert spool.append(b"x" * (SEGMENT - HEADER_SIZE - FRAME_SIZE))
    assert spool.dropped == {"too_large": 1}


def test_append_after_close_is_refused(spool: Spool) -> None:
    """A closed spool refuses appends, counted as closed."""
    spool.close()
    assert not spool.append(rec(0))
    assert spool.dropped == {"closed": 1}


def test_permissions(tmp_path: Path) -> None:
    """The spool directory is created 0700 and segment files 0600, whatever the umask."""
    old = os.umask(0)
    try:
        s = Spool(tmp_path / "a" / "spool", segment_bytes=SEGMENT)
        assert s.append(rec(0))
    finally:
        os.umask(old)
    assert stat.S_IMODE(s.directory.stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in s.directory.iterdir()] == [0o600]
    s.close()


def test_default_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BANYAN_SPOOL_DIR wins, else $XDG_CACHE_HOME/banyan/spool/<project>, sanitised."""
    monkeypatch.delenv("BANYAN_SPOOL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _spooldir.default_directory(None) == tmp_path / "banyan/spool/default"
    assert _spooldir.default_directory("../x y") == tmp_path / "banyan/spool/_x_y"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _spooldir.default_directory("p") == tmp_path / ".cache/banyan/spool/p"
    monkeypatch.setenv("BANYAN_SPOOL_DIR", str(tmp_path / "env"))
    assert Spool(project="p").directory == tmp_path / "env"
    assert Spool(tmp_path / "arg").directory == tmp_path / "arg"


def test_second_instance_cannot_claim_held_segments(tmp_path: Path) -> None:
    """flock is per open file: another spool, even in this process, waits for close()."""
    a = Spool(tmp_path, segment_bytes=SEGMENT)
    fill(a, 30)
    b = Spool(tmp_path, segment_bytes=SEGMENT)
    assert b.claim() is None
    assert a.append(rec(30))
    a.close()
    assert replay_all(b) == list(range(31))
    b.close()


@pytest.mark.parametrize("replaced", [False, True])
def test_lock_path_refuses_a_file_deleted_before_the_lock(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, replaced: bool
) -> None:
    """A claimer that opened a segment just before another process acked it does not replay it."""
    path = orphan(spool, 3)
    early = os.open(path, os.O_RDONLY)  # opened before the other process's ack
    os.unlink(path)
    if replaced:
        path.write_bytes(b"")
    monkeypatch.setattr(os, "open", lambda *args, **kwargs: os.dup(early))
    assert _spooldir.lock_path(path) is None
    monkeypatch.undo()
    os.close(early)


def test_purge_deletes_what_no_one_else_holds(tmp_path: Path) -> None:
    """purge removes own and orphaned segments and leaves a live owner's."""
    holder = Spool(tmp_path, segment_bytes=SEGMENT)
    fill(holder, 20)
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    fill(s, 20)
    assert s.purge() == 20
    assert s.status()["records"] == 20
    holder.close()
    assert s.purge() == 20
    assert s.status()["segments"] == 0
    s.close()


def test_status(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    """status reports segments, records, bytes, creator pids, oldest age and counters."""
    fill(spool, 20)
    oldest = _spooldir.created_ns(_spooldir.names(spool.directory)[0])
    monkeypatch.setattr(time, "time_ns", lambda: oldest + 2_500_000_000)
    st = spool.status()
    assert st["segments"] == 2
    assert st["records"] == 20
    assert st["bytes"] == 2 * SEGMENT
    assert st["owners"] == [os.getpid()]
    assert st["oldest_age_s"] == 2.5
    assert st["spooled"] == 20


def test_stale_tmp_files_are_cleaned(spool: Spool) -> None:
    """A .tmp left by a writer killed while creating a segment is removed once stale."""
    spool.directory.mkdir()
    tmp = spool.directory / f"{1:020d}-1-000001.tmp"
    tmp.write_bytes(b"\0" * 100)
    assert spool.claim() is None
    assert tmp.exists()
    os.utime(tmp, (1, 1))
    assert spool.claim() is None
    assert not tmp.exists()


def test_prepare_makes_a_spare_used_at_rollover(tmp_path: Path) -> None:
    """prepare() allocates the next segment; wake fires once when the active one is half full."""
    woken = []
    s = Spool(tmp_path, segment_bytes=SEGMENT, wake=lambda: woken.append(1))
    s.prepare()
    assert [p.suffix for p in tmp_path.iterdir()] == [".tmp"]
    for i in range(8):
        assert s.append(rec(i))
    assert woken == [1]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".seg"]
    s.prepare()
    fill(s, 20, start=8)
    assert replay_all(s) == list(range(28))
    s.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["interval", "always"])
def test_sync_modes_round_trip(tmp_path: Path, mode: str) -> None:
    """sync="interval" and "always" write the same segments; maybe_sync runs without error."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, sync=mode, sync_interval=0.0)  # type: ignore[arg-type]
    fill(s, 30)
    s.maybe_sync()
    assert s.append(rec(30))
    s.maybe_sync()
    s.seal()
    assert replay_all(s) == list(range(31))
    assert s.last_error is None
    s.close()


def test_rejects_bad_options(tmp_path: Path) -> None:
    """An unknown sync mode or a segment smaller than a header is a ValueError."""
    with pytest.raises(ValueError, match="sync"):
        Spool(tmp_path, sync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="segment_bytes"):
        Spool(tmp_path, segment_bytes=10)


def test_after_fork_in_child_opens_a_new_segment(spool: Spool) -> None:
    """After the fork reset, appends go to a fresh segment and the old one is untouched."""
    assert spool.append(rec(0))
    first = segment_files(spool)[0]
    before = first.read_bytes()
    spool.after_fork_in_child()  # (the process test runs this in a real child)
    assert spool.append(rec(1))
    assert first.read_bytes() == before
    assert len(segment_files(spool)) == 2


def test_unreadable_segment_yields_nothing(spool: Spool) -> None:
    """A claimed segment whose descriptor fails to read yields no records and records the error."""
    fill(spool, 3)
    seg = spool.claim()
    assert seg is not None
    spool.close()  # closes the claimed descriptor under the reader
    assert list(seg.records()) == []
    assert seg.damage.error is not None


class Sending:
    """What a Replayer needs of a Delivery: a send per batch and the server's Retry-After."""

    not_before = 0.0

    def __init__(self, send: Any) -> None:
        self.send = send

    def deliver(self, batch: list[bytes], deadline: float | None, stop: Any, tally: Stats) -> bool:
        return bool(self.send(batch, deadline, stop, tally))


def accept_all() -> Any:
    """A delivery that counts every batch sent into the segment's tally."""

    def send(batch: list[bytes], deadline: float | None, stop: Any, tally: Stats) -> bool:
        tally.add(sent=len(batch))
        return True

    return Sending(send)


def test_a_segment_acked_after_close_stays_and_its_replay_is_not_counted(tmp_path: Path) -> None:
    """shutdown() closed the spool while a replay was sending: the segment stays for a later
    replay (answered with duplicates), so this one's deliveries are not counted now too."""
    spool = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    fill(spool, 3)
    stats = Ledger()

    def deliver() -> Any:
        def send(batch: list[bytes], deadline: float | None, stop: Any, tally: Stats) -> bool:
            tally.add(sent=len(batch))
            spool.close()  # what shutdown does meanwhile
            return True

        return Sending(send)

    replayer = Replayer(spool, deliver, stats, batch=(100, 1 << 20), seal_interval=0.0,
                        backoff=(0.01, 0.1), healthy=lambda: 0.0, prepare=False)  # fmt: skip
    for _ in range(3):
        replayer.step()
    assert stats.sent == 0
    assert len(segment_files(spool)) == 1
    again = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    assert len(replay_all(again)) == 3
    again.close()


def test_a_passing_read_error_keeps_the_segment_for_another_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One EIO while reading a segment: it is released and read again after the backoff,
    not deleted as unreadable with one record counted lost."""
    spool = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    fill(spool, 5)
    stats, sent = Ledger(), list[int]()
    real, failures = _segment.read_file, [OSError(errno.EIO, "I/O error")]

    def flaky(fd: int) -> bytes:
        if failures:
            raise failures.pop()
        return real(fd)

    monkeypatch.setattr(_segment, "read_file", flaky)

    def deliver() -> Any:
        def send(batch: list[bytes], deadline: float | None, stop: Any, tally: Stats) -> bool:
            sent.extend(num(r) for r in batch)
            tally.add(sent=len(batch))
            return True

        return Sending(send)

    replayer = Replayer(spool, deliver, stats, batch=(100, 1 << 20), seal_interval=0.0,
                        backoff=(0.01, 0.1), healthy=lambda: 0.0, prepare=False)  # fmt: skip
    deadline = time.monotonic() + 5
    while stats.sent < 5 and time.monotonic() < deadline:  # delivered, then acked
        replayer.step()
        time.sleep(0.005)
    assert sent == list(range(5))
    assert (stats.sent, stats.dropped[DropReason.SPOOL_CORRUPT]) == (5, 0)
    spool.close()


def answering(spool: Spool, error: HTTPStatusError, cap: float) -> tuple[Replayer, Ledger]:
    """A replayer of ``spool`` (3 records) whose every request fails with ``error``."""
    fill(spool, 3)
    config = build("psk_unit", "http://127.0.0.1:9", None, max_retries=0, spool_dir=False)

    class Failing:
        http_version = "HTTP/1.1"

        def request(self, *args: object, **kwargs: object) -> None:
            raise error

    stats = Ledger()
    replayer = Replayer(
        spool, lambda: Delivery(config, Failing(), in_spool=True),  # type: ignore[arg-type]
        stats, batch=(100, 1 << 20), seal_interval=0.0, backoff=(0.01, cap),
        healthy=lambda: 0.0, prepare=False,
    )  # fmt: skip
    return replayer, stats


def test_replay_after_a_429_waits_for_its_retry_after(tmp_path: Path) -> None:
    """A replayed batch answered 429 with Retry-After: 0.5 backs off at least that long, not
    just the replayer's own short backoff."""
    spool = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    replayer, _ = answering(spool, HTTPStatusError(429, "slow down", 0.5), cap=0.1)
    before = time.monotonic()
    replayer.step()
    assert replayer._not_before >= before + 0.5
    assert not replayer.step()  # still waiting: nothing sent
    spool.close()


def test_a_flush_that_does_not_wait_leaves_the_replay_backoff_alone(tmp_path: Path) -> None:
    """Review item 4: a buffered flush (wait=False) after a failed replay returns at once and
    keeps the backoff; a waiting (durable) flush ends it."""
    spool = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    replayer, _ = answering(spool, HTTPStatusError(503, "busy", 30.0), cap=60.0)
    replayer.step()
    backoff = replayer._not_before
    woken: list[bool] = []
    assert replayer.flush(time.monotonic() + 30, lambda: woken.append(True), wait=False)
    assert (woken, replayer._not_before) == ([True], backoff)
    assert not replayer.flush(time.monotonic(), lambda: None, wait=True)
    assert replayer._not_before == 0.0
    spool.close()


def test_replay_refused_by_the_key_holds_the_segment_and_backs_off_long(tmp_path: Path) -> None:
    """A replayed batch answered 401 keeps its segment, counts nothing lost, and is not tried
    again before the longest backoff (max_retry_delay): a process with the right key sends it."""
    spool = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    replayer, stats = answering(spool, AuthenticationError(401, "invalid API key"), cap=600.0)
    with pytest.warns(RuntimeWarning, match="API key"):
        assert not replayer.step()
    assert replayer.key_refused
    assert replayer._not_before - time.monotonic() > 300
    assert not replayer.step()  # held: nothing sent
    assert (stats.sent, sum(stats.dropped.values()), len(segment_files(spool))) == (0, 0, 1)
    spool.close()


def test_a_segment_that_stays_unreadable_counts_its_records_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given up after its retries, an unreadable segment's records count as lost, all of
    them (its header's count), and nothing else: no phantom drop of one."""
    spool = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    fill(spool, 5)

    def unreadable(fd: int) -> bytes:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(_segment, "read_file", unreadable)
    stats = Ledger()

    def deliver() -> Any:
        return Sending(lambda *args: True)

    replayer = Replayer(spool, deliver, stats, batch=(100, 1 << 20), seal_interval=0.0,
                        backoff=(0.01, 0.02), healthy=lambda: 0.0, prepare=False)  # fmt: skip
    deadline = time.monotonic() + 5
    while segment_files(spool) and time.monotonic() < deadline:
        replayer.step()
        time.sleep(0.005)
    assert segment_files(spool) == []
    assert (spool.lost, stats.dropped[DropReason.SPOOL_CORRUPT]) == (5, 0)
    spool.close()


def test_close_mid_replay_hands_the_whole_segment_over_and_counts_it(tmp_path: Path) -> None:
    """A segment half replayed when the spool closes is unlocked whole for the next process;
    close() returns the records it handed over (every held segment's, the active one too)."""
    spool = Spool(tmp_path / "spool", segment_bytes=64 << 10)
    fill(spool, 30)
    assert spool.append(rec(30))  # the active segment, sealed by close()

    replayer = Replayer(spool, accept_all, Ledger(), batch=(10, 1 << 20), seal_interval=1e9,
                        backoff=(0.01, 0.1), healthy=lambda: 0.0, prepare=False)  # fmt: skip
    assert replayer.step()  # 10 of the first segment's 30 sent
    replayer.stop()
    assert spool.close() == 31
    assert spool.handed_over == 31
    again = Spool(tmp_path / "spool", segment_bytes=64 << 10)
    assert replay_all(again) == list(range(31))
    again.close()


def test_a_segment_is_deleted_with_its_last_batch(tmp_path: Path) -> None:
    """The step that delivers a segment's last batch acknowledges it: no further step needed."""
    spool = Spool(tmp_path / "spool", segment_bytes=64 << 10)
    fill(spool, 20)

    stats = Ledger()
    replayer = Replayer(spool, accept_all, stats, batch=(10, 1 << 20), seal_interval=1e9,
                        backoff=(0.01, 0.1), healthy=lambda: 0.0, prepare=False)  # fmt: skip
    assert replayer.step()
    assert segment_files(spool)
    assert replayer.step()
    assert (segment_files(spool), stats.sent, spool.replayed) == ([], 20, 20)
    spool.close()


class Shedding:
    """A delivery whose server takes the records ``takes`` says, and gives the rest back
    through ``spill`` (set by the Replayer) as ``reason``; it logs every record sent."""

    not_before = 0.0
    spill: Any = None

    def __init__(self, takes: Any, reason: DropReason, sent: list[int]) -> None:
        self.takes, self.reason, self.sent = takes, reason, sent

    def deliver(self, batch: list[bytes], deadline: float | None, stop: Any, tally: Stats) -> bool:
        self.sent.extend(num(record) for record in batch)
        left = [record for record in batch if not self.takes(num(record))]
        if left:
            self.spill(batch, left, self.reason, "HTTP 429")
        return not left


def shedding(spool: Spool, takes: Any, reason: DropReason) -> tuple[Replayer, list[int]]:
    """A replayer of ``spool`` (20 records, batches of 10) over a Shedding delivery."""
    fill(spool, 20)
    sent: list[int] = []

    def deliver() -> Any:
        return Shedding(takes, reason, sent)

    replayer = Replayer(spool, deliver, Ledger(),
                        batch=(10, 1 << 20), seal_interval=0.0, backoff=(0.0, 0.0),
                        healthy=lambda: 0.0, prepare=False)  # fmt: skip
    return replayer, sent


def test_a_replay_the_server_took_part_of_sends_only_the_rest_again(tmp_path: Path) -> None:
    """Review item 2: the server took a batch but shed three of its records (429): only
    those go again, first at the next step, and the segment is deleted once all went."""
    spool = Spool(tmp_path / "spool", segment_bytes=64 << 10)
    shed = {0, 2, 4}

    def takes(n: int) -> bool:
        if n in shed:
            shed.discard(n)
            return False
        return True

    replayer, sent = shedding(spool, takes, DropReason.RETRIES_EXHAUSTED)
    for _ in range(6):
        replayer.step()
    assert sent == [*range(10), 0, 2, 4, *range(10, 20)]
    assert segment_files(spool) == []
    spool.close()


def test_records_taken_before_a_failed_batch_are_not_sent_again(tmp_path: Path) -> None:
    """Review item 2: a segment's first batch went through, its second failed whole: the
    segment is put back and read again, and only the second batch is sent again."""
    spool = Spool(tmp_path / "spool", segment_bytes=64 << 10)
    failing = [True]
    replayer, sent = shedding(spool, lambda n: n < 10 or not failing[0], DropReason.DEADLINE)
    assert replayer.step()
    assert not replayer.step()  # the second batch fails: segment put back
    failing[0] = False
    replayer._not_before = 0.0
    for _ in range(3):
        replayer.step()
    assert sent == [*range(20), *range(10, 20)]
    assert segment_files(spool) == []
    spool.close()


def test_add_returns_why_it_refused_each_record(tmp_path: Path) -> None:
    """add() says why it refused that very record (a DropReason; None when kept), so a
    caller never guesses the reason from counters another thread also moves (issue 15)."""
    full = Spool(tmp_path / "full", segment_bytes=SEGMENT, max_total_bytes=SEGMENT - 1)
    assert full.add(rec(0)) is DropReason.SPOOL_FULL
    assert full.add_many([rec(1), rec(2)]) == (0, {DropReason.SPOOL_FULL: 2})
    full.close()
    spool = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    assert spool.add(rec(0)) is None
    assert spool.add(b"x" * SEGMENT) is DropReason.TOO_LARGE
    assert spool.add_many([rec(1), b"x" * SEGMENT, rec(2)]) == (2, {DropReason.TOO_LARGE: 1})
    spool.close()
    assert spool.add(rec(3)) is DropReason.CLOSED
    assert spool.dropped == {"too_large": 2, "closed": 1}


def test_add_many_counts_its_refusals_by_reason(tmp_path: Path) -> None:
    """add_many() says how many records it refused for each reason, not only the last one's."""
    full = Spool(tmp_path / "full", segment_bytes=SEGMENT, max_total_bytes=SEGMENT - 1)
    refusals = full.add_many([b"x" * SEGMENT, rec(1)])
    full.close()
    assert refusals == (0, {DropReason.TOO_LARGE: 1, DropReason.SPOOL_FULL: 1})
