"""Spool corruption: torn tails and flipped bits in the segments of a dead process.

With the server down, a durable logger writes ``--records`` records to its
spool (several segments) and closes. Then, in every segment, one bit is
flipped in the payload of every ``--stride``-th frame and the last frame's
tail is zeroed, as a torn write leaves it. The server comes back on the
same port and database and a new logger replays the directory: every
undamaged frame must be stored exactly once, every damaged one counted as
``spool_corrupt`` (and none stored).

Run: ``python -m stress.corruption [--records 20000] [--stride 97]``
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import msgspec

import banyan
from banyan import _localserver
from banyan._segment import HEADER_SIZE
from stress._result import census, drain, emit

_FRAME = struct.Struct("<4sII")
_COMMITTED = slice(24, 32)


def frames(data: bytes) -> list[tuple[int, int]]:
    """(payload offset, payload length) of each committed frame of a segment."""
    out, pos = [], HEADER_SIZE
    committed = int.from_bytes(data[_COMMITTED], "little")
    while pos + _FRAME.size <= committed:
        _, length, _ = _FRAME.unpack_from(data, pos)
        out.append((pos + _FRAME.size, length))
        pos += _FRAME.size + length
    return out


def damage(segment: Path, stride: int) -> list[str]:
    """Flip a bit in every ``stride``-th frame and tear the last; the inputs damaged."""
    data = bytearray(segment.read_bytes())
    found = frames(bytes(data))
    # Never two damaged frames side by side: each must count as exactly one.
    picked = [*range(1, len(found) - 2, stride), len(found) - 1] if len(found) > 3 else []
    inputs = []
    for n in picked:
        start, length = found[n]
        inputs.append(msgspec.msgpack.decode(bytes(data[start : start + length]))["input"])
        if n == len(found) - 1:
            data[start + length - min(length, 30) : start + length] = bytes(min(length, 30))
        else:
            data[start + length // 2] ^= 0x10
    segment.write_bytes(bytes(data))
    return inputs


def spool_while_down(
    server: _localserver.LocalServer, spool: Path, records: int
) -> tuple[int, int]:
    """Log durably with the server down; (records accepted, records spooled)."""
    logger = banyan.PromptStackLogger(
        server.api_key, server.base_url, durability="durable", spool_dir=str(spool),
        background_thread=False,
    )  # fmt: skip
    try:
        sent = sum(logger.log_prompt(f"rec {i}", "o" * 300) for i in range(records))
    finally:
        logger.shutdown(0)
    return sent, logger.get_stats()["spooled"]


def run(tmp: Path, records: int, stride: int) -> int:
    """The scenario; the exit status."""
    server = _localserver.start(tmp)
    server.stop()
    spool = tmp / "spool"
    sent, spooled = spool_while_down(server, spool, records)
    segments = sorted(spool.glob("*.seg"))
    damaged = [i for segment in segments for i in damage(segment, stride)]
    server = _localserver.start(tmp, port=server.port, db=server.db)
    try:
        logger = banyan.PromptStackLogger(server.api_key, server.base_url, spool_dir=str(spool))
        try:
            drained = drain(logger, 60)
        finally:
            logger.shutdown(10)
        stats = logger.get_stats()
        found, stored, duplicated = census(server)
    finally:
        server.stop()
    expected = {f"rec {i}" for i in range(sent)} - set(damaged)
    exact = set(found) == expected
    print(f"sent={sent} segments={len(segments)} damaged={len(damaged)} stored={stored} "
          f"corrupt_frames={stats['spool_corrupt_frames']} replayed={stats['replayed']} "
          f"exactly_the_good_frames={exact}")  # fmt: skip
    return emit(
        "corruption", sent=sent, stored=stored, duplicated=duplicated, dropped=stats["dropped"],
        spooled=spooled, ok=drained and exact and stats["spool_corrupt_frames"] == len(damaged),
        notes=f"{len(damaged)} frames damaged in {len(segments)} segments",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run against a fresh server in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--stride", type=int, default=97, help="damage every N-th frame")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="corruption-"))
    try:
        return run(tmp, args.records, max(2, args.stride))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
