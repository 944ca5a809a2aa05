"""The spool's on-disk segment format (pinned by literal vectors: spools outlive upgrades)
and its reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from banyan import _segment as _segment_module
from banyan._segment import (
    HEADER_SIZE,
    MARKER,
    Damage,
    Header,
    Segment,
    Writer,
    frame_crc,
    parse_header,
    read_file,
    read_frames,
)

#: One frame as the 1.x format writes it (banyan/_segment.py's docstring): marker,
#: length 6 (u32 LE), crc32(payload, 0x5B7A11C3 ^ 6) (u32 LE), payload.
FRAME = bytes.fromhex("c1424e59 06000000 c524577e") + b"banyan"


def test_a_segment_frame_is_written_byte_for_byte_as_documented(tmp_path: Path) -> None:
    """Writer lays out marker, length and the length-seeded CRC exactly as the format says."""
    size = HEADER_SIZE + len(FRAME)
    fd = os.open(tmp_path / "seg", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, size)
        writer = Writer(fd, size, pid=1, created_ns=2)
        assert writer.append(b"banyan")
        writer.close()
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    assert data[HEADER_SIZE:] == FRAME


def test_a_frame_written_by_an_earlier_version_reads_back() -> None:
    """A segment holding the literal frame (as an older process left it) yields its payload."""
    header = bytearray(HEADER_SIZE)
    header[:8] = b"BNYSPOOL"
    header[8:10] = (1).to_bytes(2, "little")
    header[24:40] = (HEADER_SIZE + len(FRAME)).to_bytes(8, "little") + (1).to_bytes(8, "little")
    damage = Damage()
    assert list(read_frames(bytes(header) + FRAME, damage)) == [b"banyan"]
    assert damage == Damage()


def _segment(*parts: bytes, committed: int | None = None, records: int = 0) -> bytes:
    """A segment: a header committing ``parts`` (or ``committed`` bytes), then the parts."""
    body = b"".join(parts)
    end = HEADER_SIZE + len(body) if committed is None else committed
    header = b"BNYSPOOL" + (1).to_bytes(2, "little") + bytes(2) + (7).to_bytes(4, "little")
    header += (9).to_bytes(8, "little") + end.to_bytes(8, "little") + records.to_bytes(8, "little")
    return header.ljust(HEADER_SIZE, b"\0") + body


def _frame(payload: bytes) -> bytes:
    return (
        MARKER
        + len(payload).to_bytes(4, "little")
        + frame_crc(payload, len(payload)).to_bytes(4, "little")
        + payload
    )


def _read(data: bytes) -> tuple[list[bytes], Damage]:
    damage = Damage()
    return list(read_frames(data, damage)), damage


def test_a_new_segment_header_is_written_byte_for_byte(tmp_path: Path) -> None:
    """A new segment's header: magic, version 1, reserved 0, pid, created, committed 64,
    records 0."""
    fd = os.open(tmp_path / "seg", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 4096)
        Writer(fd, 4096, pid=7, created_ns=9).close()
        assert os.pread(fd, HEADER_SIZE, 0) == _segment(committed=HEADER_SIZE)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("data", "header"),
    [
        (_segment(committed=HEADER_SIZE, records=3), Header(7, 9, HEADER_SIZE, 3)),
        (_segment(committed=HEADER_SIZE - 1), None),
        (b"BNYSPOOX" + _segment()[8:], None),
        (_segment()[:8] + (2).to_bytes(2, "little") + _segment()[10:], None),
        (_segment()[:-1], None),
    ],
)
def test_headers_are_read_only_when_whole_and_consistent(
    data: bytes, header: Header | None
) -> None:
    """parse_header reads every field, and refuses a short, foreign, newer or
    inconsistent header."""
    assert parse_header(data) == header


def test_bad_stretches_are_counted_and_skipped_to_the_next_good_frame() -> None:
    """Each bad stretch (one stray byte, a marker whose frame fails its CRC) is one corrupt
    frame of its length; the frames after each are read."""
    fake = MARKER + bytes(8) + b"zz"
    data = _segment(_frame(b"a"), b"\x00", _frame(b""), fake, _frame(b"c"), b"\x01" * 5)
    assert _read(data) == ([b"a", b"", b"c"], Damage(frames=3, bytes=1 + len(fake) + 5))


def test_an_empty_frame_at_the_very_end_is_read() -> None:
    """A frame with an empty payload that ends exactly at the committed end is good."""
    assert _read(_segment(_frame(b"x"), _frame(b""))) == ([b"x", b""], Damage())


def test_a_headerless_segment_ends_at_its_trailing_zeros() -> None:
    """With no readable header the segment is scanned to its end; trailing zeros are unused."""
    data = bytes(HEADER_SIZE) + _frame(b"q") + bytes(100)
    assert _read(data) == ([b"q"], Damage(bad_header=True))


def test_read_file_reads_on_after_short_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_file joins short reads at the right offsets, and stops at an early end."""
    path = tmp_path / "f"
    path.write_bytes(bytes(range(200)))
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: real_pread(fd, min(n, 7), at))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert read_file(fd) == bytes(range(200))
        real_fstat = os.fstat
        monkeypatch.setattr(os, "fstat", lambda fd: _Sized(real_fstat(fd).st_size + 50))
        assert read_file(fd) == bytes(range(200))
    finally:
        os.close(fd)


class _Sized:
    def __init__(self, size: int) -> None:
        self.st_size = size


@pytest.mark.parametrize(("head", "lost"), [(_segment(records=5), 5), (bytes(HEADER_SIZE), 1)])
def test_an_unreadable_segment_counts_one_stretch_and_its_headers_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, head: bytes, lost: int
) -> None:
    """A segment that cannot be read: its error kept, one corrupt stretch, and as lost what
    its header counts (at least one)."""
    path = tmp_path / "seg"
    path.write_bytes(head)

    def fail(fd: int) -> bytes:
        raise OSError("disk gone")

    monkeypatch.setattr(_segment_module, "read_file", fail)
    segment = _read_nothing_from(path)
    assert (segment.damage.error, segment.damage.frames, segment.lost) == ("disk gone", 1, lost)


def test_an_all_zero_segment_loses_nothing(tmp_path: Path) -> None:
    """A segment of zeros (created, never written) has no records and none lost."""
    path = tmp_path / "seg"
    path.write_bytes(bytes(4096))
    segment = _read_nothing_from(path)
    assert (segment.good, segment.lost) == (0, 0)


def _read_nothing_from(path: Path) -> Segment:
    """The segment at ``path``, read through: it must yield no record."""
    fd = os.open(path, os.O_RDONLY)
    try:
        segment = Segment(path, fd, 1)
        assert list(segment.records()) == []
    finally:
        os.close(fd)
    return segment


def test_resynchronising_never_steps_back_into_a_good_frame() -> None:
    """A stretch right after a good frame whose payload ends in 0xc1 is searched from past
    its start: the reader never goes back into the frame it has read."""
    tail = _frame(b"z")[1:]  # "BNY..." after the payload's 0xc1 would be a frame from one back
    assert _read(_segment(_frame(b"a\xc1"), tail)) == (
        [b"a\xc1"],
        Damage(frames=1, bytes=len(tail)),
    )
