"""The spool at its edges: segment names, size bounds, rollover, eviction at the bound, the
spare, purge and ack counters, the fork reset."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_spool import SEGMENT, fill, frame_offsets, num, orphan, rec, replay_all, segment_files

from banyan import _spooldir
from banyan._segment import FRAME_SIZE, HEADER_SIZE
from banyan._spool import Spool


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_the_smallest_segment_holds_one_empty_frame(tmp_path: Path) -> None:
    """segment_bytes of a header and one frame is taken; one byte less is a ValueError."""
    smallest = HEADER_SIZE + FRAME_SIZE
    s = Spool(tmp_path, segment_bytes=smallest)
    assert s.append(b"")
    s.close()
    with pytest.raises(ValueError, match=f"segment_bytes must be at least {smallest}$"):
        Spool(tmp_path, segment_bytes=smallest - 1)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults: 4 MiB segments, 256 MiB in all, no sync, 1 s interval and retry, the project's
    own directory."""
    monkeypatch.delenv("BANYAN_SPOOL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    s = Spool(project="shop")
    assert (s.segment_bytes, s.max_total_bytes, s.sync) == (4 << 20, 256 << 20, "none")
    assert (s.sync_interval, s.retry_after) == (1.0, 1.0)
    assert s.directory == tmp_path / "banyan" / "spool" / "shop"
    s.close()


def test_a_record_filling_the_segment_exactly_fits(tmp_path: Path) -> None:
    """A record of segment_bytes minus header and frame is appended; one byte more is refused."""
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    assert s.append(b"x" * (SEGMENT - HEADER_SIZE - FRAME_SIZE))
    assert not s.append(b"x" * (SEGMENT - HEADER_SIZE - FRAME_SIZE + 1))
    assert s.spooled == 1
    s.close()


def test_segment_names_carry_creation_time_pid_and_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment is named <created ns, 20 digits>-<pid>-<sequence, 6 digits>.seg; the time
    is the one in its header, the sequence counts every file this process named."""
    clock = iter(range(1000, 2000))
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    fill(s, 14)  # two segments
    names = _spooldir.names(tmp_path)
    pid = os.getpid()
    created = [_spooldir.created_ns(name) for name in names]
    assert names == [f"{created[0]:020d}-{pid}-000002.seg", f"{created[1]:020d}-{pid}-000004.seg"]
    for name, ns in zip(names, created, strict=True):
        peeked = _spooldir.peek(tmp_path / name)
        assert peeked is not None
        assert peeked[1] is not None
        assert peeked[1].created_ns == ns
    s.close()


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    monkeypatch.setattr(_spooldir, "fsync_directory", calls.append)
    return calls


@pytest.mark.parametrize(("mode", "expected"), [("always", 2), ("interval", 0), ("none", 0)])
def test_only_always_fsyncs_the_directory_at_each_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, expected: int
) -> None:
    """sync="always" makes each new segment's name durable at once; the others leave it."""
    calls = _fsyncs(monkeypatch)
    s = Spool(tmp_path, segment_bytes=SEGMENT, sync=mode)  # type: ignore[arg-type]
    for i in range(14):  # two segments
        assert s.append(rec(i))
    assert len(calls) == expected
    s.close()


def test_wake_fires_once_a_segment_is_past_half_full(tmp_path: Path) -> None:
    """wake is called by the append that takes a segment past half (not to exactly half), once
    per segment."""
    size = 100
    woken: list[int] = []
    s = Spool(tmp_path, segment_bytes=2 * (HEADER_SIZE + FRAME_SIZE + size))
    s.wake = lambda: woken.append(s.spooled)
    assert s.append(b"")  # opens the first segment
    for segment in range(2):
        assert s.append(b"a" * (size - FRAME_SIZE))  # exactly half
        assert len(woken) == segment
        assert s.append(b"")
        assert woken[segment:] == [s.spooled]
        assert s.append(b"b" * (HEADER_SIZE + size - FRAME_SIZE))  # full to the last byte
        assert s.append(b"")  # opens the next segment
        assert len(woken) == segment + 1
    assert len(segment_files(s)) == 3
    s.close()


def test_eviction_stops_exactly_at_the_bound(tmp_path: Path) -> None:
    """A new segment evicts the oldest unheld segments until the total is at most the bound."""
    for _ in range(3):
        orphan(Spool(tmp_path, segment_bytes=SEGMENT), 13)
    s = Spool(tmp_path, segment_bytes=SEGMENT, max_total_bytes=2 * SEGMENT)
    assert s.append(rec(100))
    assert s.evicted == 26
    assert len(segment_files(s)) == 2
    s.close()


def test_orphans_are_claimed_while_this_process_writes_its_own(tmp_path: Path) -> None:
    """An active segment does not hide the segments a closed spool left behind."""
    orphan(Spool(tmp_path, segment_bytes=SEGMENT), 3)
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    assert s.append(rec(9))
    seg = s.claim()
    assert seg is not None
    assert [num(r) for r in seg.records()] == [0, 1, 2]
    s.ack(seg)
    assert s.claim() is None
    s.close()


def _corrupt_one_frame(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[frame_offsets(path)[1] + 300] ^= 0x10
    path.write_bytes(bytes(data))


def test_ack_adds_up_replayed_corrupt_and_lost_over_segments(tmp_path: Path) -> None:
    """Each ack adds its segment's good, corrupt and lost counts to the spool's."""
    for _ in range(2):
        _corrupt_one_frame(orphan(Spool(tmp_path, segment_bytes=SEGMENT), 5))
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    bytes_each = []
    while (seg := s.claim()) is not None:
        assert len(list(seg.records())) == 4
        bytes_each.append(seg.damage.bytes)
        assert s.ack(seg)
    assert (s.replayed, s.corrupt_frames, s.lost) == (8, 2, 2)
    assert s.corrupt_bytes == sum(bytes_each) > 0
    s.close()


def test_purge_counts_add_up(tmp_path: Path) -> None:
    """purged adds up every purge's deletions."""
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    fill(s, 3)
    assert s.purge() == 3
    fill(s, 4)
    assert s.purge() == 4
    assert s.purged == 7
    assert s.status()["purged"] == 7
    s.close()


def test_the_fork_reset_closes_every_inherited_descriptor(tmp_path: Path) -> None:
    """after_fork_in_child closes the sealed, claimed, active and spare segments' descriptors."""
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    fill(s, 30)  # three sealed segments
    claimed = s.claim()
    assert claimed is not None
    assert s.append(rec(99))
    s.prepare()
    fds = [*s._sealed.values(), *s._claimed.values(), s._active[1], s._spare[1]]  # type: ignore[index]
    assert len(fds) == 5
    assert not any(map(_closed, fds))
    s.after_fork_in_child()
    assert all(map(_closed, fds))
    assert s.append(rec(100))
    s.close()


def test_the_fork_reset_survives_descriptors_the_child_closed_itself(tmp_path: Path) -> None:
    """A child that closed every descriptor (a daemon) still gets a working spool."""
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    fill(s, 3)
    assert s.append(rec(3))
    for fd in [*s._sealed.values(), s._active[1]]:  # type: ignore[index]
        os.close(fd)
    s.after_fork_in_child()
    assert s.append(rec(4))
    s.close()


def test_a_closed_spool_stays_closed_after_the_fork_reset(tmp_path: Path) -> None:
    """A spool closed before the fork refuses appends in the child too, creating no file."""
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    s.close()
    s.after_fork_in_child()
    assert not s.append(rec(0))
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_reentered_append_says_why(tmp_path: Path) -> None:
    """An append from inside the spool's lock (a signal handler) is refused and says why."""
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    with s._lock:
        assert not s.append(rec(0))
    assert s.last_error == "spool: re-entered from a signal handler"
    s.close()


def _creates(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    made: list[Path] = []
    create = _spooldir.create

    def counted(path: Path) -> int:
        made.append(path)
        return create(path)

    monkeypatch.setattr(_spooldir, "create", counted)
    return made


def test_prepare_makes_one_spare_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare does nothing while a spare is ready or being made, or once the spool is closed."""
    made = _creates(monkeypatch)
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    zero_fill = _spooldir.fill

    def fill_preparing_again(fd: int, size: int) -> None:
        s.prepare()
        zero_fill(fd, size)

    monkeypatch.setattr(_spooldir, "fill", fill_preparing_again)
    s.prepare()  # the fill prepares again, meanwhile
    s.prepare()
    assert len(made) == 1
    s.close()
    s.prepare()
    assert len(made) == 1


def test_a_spare_that_cannot_be_filled_is_discarded_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed zero-fill leaves no spare and says why; the next prepare makes one."""

    def full(fd: int, size: int) -> None:
        raise OSError(28, "No space left on device")

    s = Spool(tmp_path, segment_bytes=SEGMENT)
    with monkeypatch.context() as patch:
        patch.setattr(_spooldir, "fill", full)
        s.prepare()
    assert s.last_error == "spool: [Errno 28] No space left on device"
    assert list(tmp_path.iterdir()) == []
    s.prepare()
    assert [p.suffix for p in tmp_path.iterdir()] == [".tmp"]
    s.close()


@pytest.mark.parametrize("what", ["directory", "create"])
def test_prepare_that_fails_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    """prepare never raises: an unusable directory or a failed create is in last_error."""
    if what == "directory":
        (tmp_path / "file").write_bytes(b"")
        s = Spool(tmp_path / "file" / "spool", segment_bytes=SEGMENT)
    else:
        s = Spool(tmp_path, segment_bytes=SEGMENT)
        monkeypatch.setattr(_spooldir, "create", lambda path: _raise(OSError(13, "denied")))
    s.prepare()
    assert (s.last_error or "").startswith("spool: ")
    s.close()


def _raise(exc: Exception) -> Any:
    raise exc


def test_a_spare_that_fits_the_bound_exactly_is_kept(tmp_path: Path) -> None:
    """The spare stays when it brings the directory to exactly max_total_bytes."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, max_total_bytes=2 * SEGMENT)
    fill(s, 3)
    s.prepare()
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".seg", ".tmp"]
    assert replay_all(s) == [0, 1, 2]
    s.close()


def test_a_server_file_that_cannot_be_written_says_why_and_records_still_spool(
    tmp_path: Path,
) -> None:
    """The server file is only for the CLI: failing to write it is in last_error, not a drop."""
    (tmp_path / _spooldir.SERVER_FILE).mkdir(parents=True)
    s = Spool(tmp_path, segment_bytes=SEGMENT, server={"url": "http://127.0.0.1:1"})
    assert s.append(rec(0))
    assert (s.last_error or "").startswith("spool: ")
    s.close()


def test_a_failed_directory_fsync_leaves_no_untracked_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After sync="always" fails to fsync the directory, every record taken can be replayed."""
    fsync = _spooldir.fsync_directory
    failures = [OSError(5, "Input/output error")]

    def failing_once(directory: Path) -> None:
        if failures:
            raise failures.pop()
        fsync(directory)

    monkeypatch.setattr(_spooldir, "fsync_directory", failing_once)
    s = Spool(tmp_path, segment_bytes=SEGMENT, sync="always", retry_after=0.0)
    taken = [i for i in range(2) if s.append(rec(i))]
    assert 1 in taken
    s.seal()
    assert replay_all(s) == taken
    s.close()


def test_overlapping_syncs_each_close_their_own_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two maybe_sync calls that overlap (sync_interval=0) each sync and close their own dups."""
    s = Spool(tmp_path, segment_bytes=SEGMENT, sync="interval", sync_interval=0.0)
    assert s.append(rec(0))
    both_in = threading.Barrier(2, timeout=30)
    fdatasync = os.fdatasync

    def meeting(fd: int) -> None:
        both_in.wait()
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", meeting)
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            s.maybe_sync()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    assert errors == []
    assert s._syncing == []
    s.close()


def _small_disk(monkeypatch: pytest.MonkeyPatch, room: int, error: int = errno.ENOSPC) -> list[Any]:
    """Zero-fills fail with ``error`` above ``room`` bytes; returns (file suffix, size) tried."""
    tried: list[Any] = []
    fill = _spooldir.fill

    def small(fd: int, size: int) -> None:
        tried.append((Path(os.readlink(f"/proc/self/fd/{fd}")).suffix, size))
        if size > room:
            raise OSError(error, os.strerror(error))
        fill(fd, size)

    monkeypatch.setattr(_spooldir, "fill", small)
    return tried


K = 1 << 10
BIG = 100 * K + HEADER_SIZE + FRAME_SIZE


@pytest.mark.parametrize(
    ("room", "record", "sizes"),
    [
        (1 << 20, 10, [4 << 20, 1 << 20]),
        (100 * K, 10, [4 << 20, 1 << 20, 256 * K, 64 * K]),
        (BIG, 100 * K, [4 << 20, 1 << 20, 256 * K, BIG]),
    ],
)
def test_a_disk_short_of_room_gets_segments_a_quarter_the_size_down_to_the_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int, record: int, sizes: list[int]
) -> None:
    """Each failed allocation tries a quarter of the size, down to 64 KiB or the record's need."""
    tried = _small_disk(monkeypatch, room)
    s = Spool(tmp_path, segment_bytes=4 << 20)
    assert s.append(b"x" * record)
    assert tried == [(".tmp", size) for size in sizes]
    assert [path.stat().st_size for path in segment_files(s)] == sizes[-1:]
    s.close()


@pytest.mark.parametrize(("room", "error", "tries"), [(32 * K, errno.ENOSPC, 4), (0, errno.EIO, 1)])
def test_a_disk_without_room_for_the_floor_or_failing_otherwise_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int, error: int, tries: int
) -> None:
    """Below 64 KiB of room, or on another error than no room, the record is refused."""
    tried = _small_disk(monkeypatch, room, error)
    s = Spool(tmp_path, segment_bytes=4 << 20)
    assert not s.append(b"x")
    assert len(tried) == tries
    assert segment_files(s) == []
    s.close()


def test_a_refusal_backs_off_for_retry_after_until_an_ack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a refused segment, appends fail fast without touching the disk for retry_after
    seconds; an ack (the server took records) ends that early."""
    orphan(Spool(tmp_path, segment_bytes=SEGMENT), 2)
    s = Spool(tmp_path, segment_bytes=SEGMENT, retry_after=3600.0)
    with monkeypatch.context() as patch:
        tried = _small_disk(patch, 0)
        assert not s.append(rec(0))
        assert not s.append(rec(1))
        assert len(tried) == 1
    assert not s.append(rec(2))
    seg = s.claim()
    assert seg is not None
    assert s.ack(seg)
    assert s.append(rec(3))
    s.close()


def test_the_server_file_is_written_once_per_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server file is written with the first segment only, not with each one after."""
    written: list[Path] = []
    monkeypatch.setattr(
        _spooldir, "write_server", lambda directory, server: written.append(directory)
    )
    s = Spool(tmp_path, segment_bytes=SEGMENT, server={"url": "http://127.0.0.1:1"})
    fill(s, 30)
    s.prepare()
    assert written == [tmp_path]
    s.close()


def test_a_second_close_hands_nothing_more_over(tmp_path: Path) -> None:
    """close hands over what the spool held once; handed_over keeps that count."""
    s = Spool(tmp_path, segment_bytes=SEGMENT)
    fill(s, 5)
    assert s.close() == 5
    assert s.close() == 0
    assert s.handed_over == 5


def test_claim_from_a_directory_others_can_write_says_why(tmp_path: Path) -> None:
    """claim refuses a directory opened to others and says why in last_error."""
    s = Spool(tmp_path / "spool", segment_bytes=SEGMENT)
    fill(s, 2)
    os.chmod(s.directory, 0o777)
    assert s.claim() is None
    assert (s.last_error or "").startswith("spool: ")
    s.close()
