"""One spool segment file: its byte layout, creation under a lock, the mmap writer, the reader.

A segment is a fixed-size, preallocated file::

    header (64 bytes, little-endian)
        magic      8s   b"BNYSPOOL"
        version    u16  1
        reserved   u16
        pid        u32  creator process
        created    u64  creation time, ns since the epoch
        committed  u64  end of the committed frames (byte offset in the file)
        records    u64  frames committed
        (zero padding to 64)
    frames, back to back from offset 64
        marker     4s   b"\\xc1BNY"
        length     u32  payload bytes
        crc        u32  zlib.crc32(payload, CRC_SEED ^ length)
        payload         one encoded record, opaque here

A frame is written first and ``committed`` after it, so a process killed in
between leaves a frame the reader never looks at. ``committed`` bounds the
reader but is not trusted beyond that: each frame's CRC is checked, and the
CRC is seeded with the length so that a flipped length bit, or a page of
zeros that never reached the disk, does not pass either.

On a bad frame the reader counts one corrupt frame and resynchronises on the
next marker whose frame checks out. ``0xc1`` never occurs in MessagePack's
type bytes nor in UTF-8, so markers inside payloads are rare, and the CRC
rejects the ones that do occur. A segment whose header is unreadable is
scanned to its end, with a trailing run of zeros taken as unused space.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"BNYSPOOL"
VERSION = 1
HEADER_SIZE = 64
MARKER = b"\xc1BNY"
CRC_SEED = 0x5B7A_11C3

_HEADER = struct.Struct("<8sHHIQQQ")
_COMMIT = struct.Struct("<QQ")
_COMMIT_OFFSET = 24
_FRAME = struct.Struct("<4sII")
FRAME_SIZE = _FRAME.size


def frame_crc(payload: bytes | bytearray | memoryview, length: int) -> int:
    """The CRC stored in a frame; seeded with the length, see the module docstring."""
    return zlib.crc32(payload, CRC_SEED ^ length)


@dataclass(frozen=True)
class Header:
    """The fields of a readable segment header."""

    pid: int
    created_ns: int
    committed: int
    records: int


def parse_header(data: bytes) -> Header | None:
    """The header of ``data``, or None when it is short, foreign or inconsistent."""
    if len(data) < HEADER_SIZE:
        return None
    magic, version, _, pid, created, committed, records = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or committed < HEADER_SIZE:
        return None
    return Header(pid, created, committed, records)


class Writer:
    """The active segment: frames are slice copies into a shared mmap of the file."""

    __slots__ = ("_mm", "pos", "records", "size")

    def __init__(self, fd: int, size: int, pid: int, created_ns: int) -> None:
        self._mm = mmap.mmap(fd, size)
        self.size = size
        self.pos = HEADER_SIZE
        self.records = 0
        _HEADER.pack_into(self._mm, 0, MAGIC, VERSION, 0, pid, created_ns, HEADER_SIZE, 0)

    def append(self, record: bytes | bytearray) -> bool:
        """Write one frame; False, writing nothing, when it does not fit."""
        length = len(record)
        start = self.pos
        end = start + FRAME_SIZE + length
        if end > self.size:
            return False
        mm = self._mm
        mm[start + FRAME_SIZE : end] = record
        # frame_crc() inlined: this is durable log_prompt's hot path.
        _FRAME.pack_into(mm, start, MARKER, length, zlib.crc32(record, CRC_SEED ^ length))
        self.records += 1
        # Committed last: a kill -9 before this store leaves the frame unseen.
        _COMMIT.pack_into(mm, _COMMIT_OFFSET, end, self.records)
        self.pos = end
        return True

    def flush(self) -> None:
        """msync the mapping: what has been written survives power loss."""
        self._mm.flush()

    def close(self) -> None:
        """Unmap; the file and its descriptor (and so its lock) are left alone."""
        self._mm.close()


@dataclass
class Damage:
    """What a reader skipped in one segment."""

    bad_header: bool = False
    frames: int = 0
    bytes: int = 0
    #: The OSError that stopped the segment from being read at all.
    error: str | None = None


def read_frames(data: bytes, damage: Damage) -> Iterator[bytes]:
    """Yield the payload of every good frame in ``data``; count the rest in ``damage``."""
    header = parse_header(data)
    if header is None:
        damage.bad_header = True
        limit = len(data)
    else:
        limit = min(header.committed, len(data))
    pos = HEADER_SIZE
    while pos < limit:
        length = _frame_at(data, pos, limit)
        if length >= 0:
            start = pos + FRAME_SIZE
            pos = start + length
            yield data[start:pos]
            continue
        resume = _next_frame(data, pos + 1, limit)
        if header is None and data.count(0, pos, limit) == limit - pos:
            return
        damage.frames += 1
        damage.bytes += resume - pos
        pos = resume


def _frame_at(data: bytes, pos: int, limit: int) -> int:
    """The payload length of a good frame at ``pos``, or -1."""
    if pos + FRAME_SIZE > limit:
        return -1
    marker, length, crc = _FRAME.unpack_from(data, pos)
    start = pos + FRAME_SIZE
    if marker != MARKER or start + length > limit:
        return -1
    with memoryview(data) as view:
        good = frame_crc(view[start : start + length], length) == crc
    return length if good else -1


def _next_frame(data: bytes, start: int, limit: int) -> int:
    """The offset of the next good frame at or after ``start``, or ``limit``."""
    while True:
        pos = data.find(MARKER, start, limit)
        if pos < 0:
            return limit
        if _frame_at(data, pos, limit) >= 0:
            return pos
        start = pos + 1


def read_file(fd: int) -> bytes:
    """The whole file behind ``fd``, read with pread (a short read ends it)."""
    size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


class Segment:
    """A sealed segment claimed for replay: read its records, then ``ack`` or ``put_back`` it.

    ``fd`` holds the segment's lock; ``pid`` is the claiming process.
    """

    def __init__(self, path: Path, fd: int, pid: int) -> None:
        self.path = path
        self.name = path.name
        self.fd = fd
        self.pid = pid
        #: Good frames yielded so far by :meth:`records`.
        self.good = 0
        self.damage = Damage()
        self._expected = 0

    def records(self) -> Iterator[bytes]:
        """Yield the payload of each good frame, oldest first; bad ones go to ``damage``."""
        self.good = 0
        self.damage = Damage()
        try:
            data = read_file(self.fd)
        except OSError as exc:
            self.damage.error = str(exc)
            # Lost, if it stays unreadable: what its header counts (one corrupt stretch).
            self.damage.frames += 1
            with contextlib.suppress(OSError):
                header = parse_header(os.pread(self.fd, HEADER_SIZE, 0))
                self._expected = header.records if header is not None else 0
            return
        header = parse_header(data)
        self._expected = header.records if header is not None else 0
        for payload in read_frames(data, self.damage):
            self.good += 1
            yield payload

    @property
    def lost(self) -> int:
        """Records known lost to corruption, once :meth:`records` has run to its end.

        The header's count minus the good frames, and at least one per
        corrupt stretch.
        """
        return max(self._expected - self.good, self.damage.frames)
