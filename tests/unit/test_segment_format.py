"""The spool's on-disk frame format, pinned by a literal vector: spools outlive upgrades."""

from __future__ import annotations

import os
from pathlib import Path

from banyan._segment import HEADER_SIZE, Damage, Writer, read_frames

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
