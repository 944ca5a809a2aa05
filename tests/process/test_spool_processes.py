"""The disk spool across real processes: kill -9, concurrent claimers, fork."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from banyan._segment import parse_header
from banyan._spool import Spool

SEGMENT = 64 << 10
PAD = b"p" * 1190

WRITER = textwrap.dedent(
    """
    import os, struct, sys, time
    from banyan._spool import Spool
    spool = Spool(sys.argv[1], segment_bytes=int(sys.argv[2]))
    pad = b"p" * 1190
    report, stop = int(sys.argv[3]), int(sys.argv[4])
    i = 0
    while i < stop:
        if not spool.append(struct.pack("<Q", i) + pad):
            sys.exit(3)
        i += 1
        if i % report == 0:
            os.write(1, b"%d\\n" % i)
    sys.stdin.readline()  # hold the segments until told (or killed)
    """
)

CLAIMER = textwrap.dedent(
    """
    import struct, sys, time
    from banyan._spool import Spool
    spool = Spool(sys.argv[1], segment_bytes=int(sys.argv[2]))
    print("ready", flush=True)
    sys.stdin.readline()
    while (segment := spool.claim()) is not None:
        numbers = [struct.unpack_from("<Q", r)[0] for r in segment.records()]
        time.sleep(0.002)  # widen the window in which the others try this segment
        print(segment.name, *numbers, flush=True)
        spool.ack(segment)
    """
)


def rec(i: int) -> bytes:
    """A 1.2 KB record carrying its sequence number."""
    return struct.pack("<Q", i) + PAD


def start(script: str, *args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def replay(spool: Spool) -> list[int]:
    out = []
    while (segment := spool.claim()) is not None:
        out += [struct.unpack_from("<Q", r)[0] for r in segment.records()]
        spool.ack(segment)
    return out


def held_by_someone(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.mark.parametrize("kill_after", [500, 3000])
def test_kill_9_mid_load_replays_every_returned_append(tmp_path: Path, kill_after: int) -> None:
    """A writer killed with SIGKILL mid-load: its segments replay a gapless prefix, none torn."""
    with start(WRITER, tmp_path, SEGMENT, 50, 10**9) as child:
        assert child.stdout is not None
        reported = 0
        while reported < kill_after:
            reported = int(child.stdout.readline())
        os.kill(child.pid, signal.SIGKILL)
        reported = max([reported, *map(int, child.stdout.read().split())])
    spool = Spool(tmp_path, segment_bytes=SEGMENT)
    numbers = replay(spool)
    assert numbers == list(range(len(numbers)))
    assert len(numbers) >= reported
    assert spool.corrupt_frames == spool.lost == 0
    spool.close()


def test_live_writer_keeps_its_segments_until_it_dies(tmp_path: Path) -> None:
    """Segments of a live process are not claimable; once it is killed they all are."""
    spool = Spool(tmp_path, segment_bytes=SEGMENT)
    with start(WRITER, tmp_path, SEGMENT, 120, 120) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"120\n"
        assert spool.claim() is None
        assert all(held_by_someone(p) for p in tmp_path.glob("*.seg"))
        os.kill(child.pid, signal.SIGKILL)
    assert replay(spool) == list(range(120))
    spool.close()


def test_concurrent_claimers_replay_each_orphan_exactly_once(tmp_path: Path) -> None:
    """Four processes claiming the same orphans together take disjoint sets covering them all."""
    seed = Spool(tmp_path, segment_bytes=16 << 10)
    for i in range(400):
        assert seed.append(rec(i))
    seed.close()
    segments = {p.name for p in tmp_path.glob("*.seg")}
    assert len(segments) >= 30
    claimers = [start(CLAIMER, tmp_path, 16 << 10) for _ in range(4)]
    for c in claimers:
        assert c.stdout is not None
        assert c.stdout.readline() == b"ready\n"
    for c in claimers:
        assert c.stdin is not None
        c.stdin.write(b"go\n")
        c.stdin.flush()
    outputs = [c.communicate(timeout=60)[0].decode().splitlines() for c in claimers]
    assert [c.returncode for c in claimers] == [0] * 4
    names = [line.split()[0] for out in outputs for line in out]
    numbers = sorted(int(n) for out in outputs for line in out for n in line.split()[1:])
    assert sorted(names) == sorted(segments)
    assert numbers == list(range(400))
    assert sum(1 for out in outputs if out) >= 2, "one claimer took everything: no race tested"


def _run_child(spool: Spool, close: bool) -> int:
    spool.after_fork_in_child()
    for i in range(100, 105):
        if not spool.append(rec(i)):
            return 3
    if close:
        spool.close()
    return 0


@pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
@pytest.mark.parametrize("close", [True, False])
def test_forked_child_writes_its_own_segment_and_keeps_parent_lock(
    tmp_path: Path, close: bool
) -> None:
    """A forked child appends to a new segment; the parent's segment and lock survive its exit."""
    spool = Spool(tmp_path, segment_bytes=SEGMENT)
    for i in range(5):
        assert spool.append(rec(i))
    (parent_segment,) = tmp_path.glob("*.seg")
    before = parent_segment.read_bytes()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _run_child(spool, close)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent_segment.read_bytes() == before
    assert held_by_someone(parent_segment)
    (child_segment,) = set(tmp_path.glob("*.seg")) - {parent_segment}
    header = parse_header(child_segment.read_bytes())
    assert header is not None
    assert header.pid == pid
    assert header.records == 5
    assert spool.append(rec(5))
    spool.close()
    reader = Spool(tmp_path, segment_bytes=SEGMENT)
    assert sorted(replay(reader)) == [*range(6), *range(100, 105)]
    reader.close()


@pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
def test_child_claim_after_hookless_fork_does_not_take_parent_segments(tmp_path: Path) -> None:
    """claim() in a child that skipped the hook resets first, never taking the parent's segments."""
    spool = Spool(tmp_path, segment_bytes=16 << 10)
    for i in range(30):
        assert spool.append(rec(i))
    spool.seal()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            segment = spool.claim()
            os.write(write, b"none" if segment is None else segment.name.encode())
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 200) == b"none"
    os.close(read)
    os.waitpid(pid, 0)
    time.sleep(0)
    assert replay(spool) == list(range(30))
    spool.close()
