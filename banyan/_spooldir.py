"""The spool directory: where it is, and creating, locking and deleting its segment files.

Segments are named ``{time_ns:020d}-{pid}-{seq:06d}.seg`` so that names sort
by creation across processes. Ownership rests on ``flock(LOCK_EX |
LOCK_NB)``, held for as long as a process keeps a segment's descriptor open.
A segment whose lock can be taken was left by a dead process or handed over at close,
and the one process that takes the lock owns it. After taking the lock,
:func:`lock_path` checks that the path still names the locked inode, so a
segment deleted by another process in between (it unlinks while still
holding the lock) is never replayed twice. A new segment is created under a
``.tmp`` name, locked, then renamed, so nobody ever sees it unlocked.
flock needs a local filesystem: on NFS it falls back to per-process POSIX
locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from banyan._segment import HEADER_SIZE, Header, Writer, parse_header

SUFFIX = ".seg"
TMP = ".tmp"
#: The server (base URL) and project the directory's records are for, as JSON.
SERVER_FILE = "server.json"
#: A ``.tmp`` file this old was left by a process killed while creating it.
STALE_TMP_S = 60.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_directory(project: str | None = None) -> Path:
    """``$BANYAN_SPOOL_DIR``, else ``<cache>/banyan/spool/<project or "default">``.

    ``<cache>`` is ``$XDG_CACHE_HOME`` or ``~/.cache``.
    """
    override = os.environ.get("BANYAN_SPOOL_DIR")
    if override:
        return Path(override)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    name = _UNSAFE.sub("_", project or "default").lstrip(".") or "default"
    return Path(cache, "banyan", "spool", name)


class UnsafeDirectory(PermissionError):
    """The spool directory is writable by others or owned by another user."""


def make_directory(directory: Path) -> None:
    """Create ``directory`` and each missing parent with mode 0700; raises OSError.

    Raises :class:`UnsafeDirectory` when it exists but others could plant or
    remove segments in it (:func:`check_private`).
    """
    if directory.is_dir():
        check_private(directory)
        return
    missing = [directory, *directory.parents]
    missing = missing[: next(i for i, d in enumerate(missing) if d.is_dir())]
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process: its mode is checked below
        # mkdir's mode passes through the umask (and parents=True ignores it).
        os.chmod(path, 0o700)
    check_private(directory)


def check_private(directory: Path) -> None:
    """Raise :class:`UnsafeDirectory` if ``directory`` exists and is not this user's alone.

    Like OpenSSH's StrictModes: a directory another user owns, or that the
    group or others may write, could hold segments planted to be sent with
    this key, or lose ours.
    """
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid():
        raise UnsafeDirectory(f"spool directory {directory} is owned by uid {st.st_uid}")
    if st.st_mode & 0o022:
        mode = oct(stat.S_IMODE(st.st_mode))
        raise UnsafeDirectory(f"spool directory {directory} is writable by others ({mode})")


def write_server(directory: Path, server: Mapping[str, str | None]) -> None:
    """Keep ``server`` (base URL and project id, never a key) in the directory, mode 0600."""
    path = directory / SERVER_FILE
    data = json.dumps(dict(server), sort_keys=True).encode()
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return
    tmp = directory / f"{SERVER_FILE}.{os.getpid()}{TMP}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_server(directory: Path) -> dict[str, str | None] | None:
    """What :func:`write_server` kept in ``directory``; None if nothing (readable) is there."""
    try:
        found = json.loads((directory / SERVER_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def names(directory: Path) -> list[str]:
    """The segment names in ``directory``, oldest first (none if it is missing)."""
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except OSError:
        return []


def listing(directory: Path) -> tuple[list[tuple[str, int]], int]:
    """(name, size) of each segment, oldest first, and the bytes of all spool files."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return [], 0
    segments = []
    total = 0
    for entry in entries:
        if entry.name.endswith((SUFFIX, TMP)):
            try:
                size = entry.stat().st_size
            except OSError:
                continue
            total += size
            if entry.name.endswith(SUFFIX):
                segments.append((entry.name, size))
    return sorted(segments), total


def allocate(path: Path, size: int) -> tuple[Path, int]:
    """Create ``path`` (a ``.tmp`` name) locked and zero-filled; raises OSError, leaving nothing."""
    fd = create(path)
    try:
        fill(fd, size)
    except BaseException:
        discard(path, fd)
        raise
    return path, fd


def create(path: Path) -> int:
    """Create ``path`` (a ``.tmp`` name), locked; raises OSError, leaving nothing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        discard(path, fd)
        raise
    return fd


def fill(fd: int, size: int) -> None:
    """Zero-fill a file :func:`create` made; raises OSError.

    Writing the zeros allocates the blocks, so a full disk fails here rather
    than with a SIGBUS on a store into the mapping, and it makes the
    mapping's first stores cheap (page faults on a fresh ext4 file cost
    ~4 us per 1.2 KB record).
    """
    zeros = bytes(min(size, 1 << 20))
    for offset in range(0, size, len(zeros)):
        os.pwrite(fd, zeros[: size - offset], offset)


def activate(fd: int, tmp: Path, path: Path, pid: int, created_ns: int) -> Writer:
    """Write the header of an allocated segment, map it and give it its final name.

    On OSError the file is deleted and ``fd`` closed.
    """
    try:
        writer = Writer(fd, os.fstat(fd).st_size, pid, created_ns)
    except BaseException:
        discard(tmp, fd)
        raise
    try:
        os.rename(tmp, path)
    except BaseException:
        writer.close()
        discard(tmp, fd)
        raise
    return writer


def lock_path(path: Path) -> int | None:
    """Open and lock ``path`` if no one holds it and it still names the locked file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


def records_in(fd: int) -> int:
    """The record count in the header of the segment open as ``fd`` (0 if unreadable)."""
    try:
        header = parse_header(os.pread(fd, HEADER_SIZE, 0))
    except OSError:
        header = None
    return header.records if header is not None else 0


def delete(path: Path, fd: int) -> int:
    """Delete a segment this process holds locked; returns its header's record count."""
    records = records_in(fd)
    discard(path, fd)
    return records


def discard(path: Path, fd: int) -> None:
    """Unlink a file this process holds, then close it (unlinking first keeps it locked)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


def clean_tmp(directory: Path) -> None:
    """Delete ``.tmp`` files left by processes killed while creating a segment."""
    try:
        tmps = [n for n in os.listdir(directory) if n.endswith(TMP)]
    except OSError:
        return
    for name in tmps:
        path = directory / name
        try:
            stale = time.time() - path.stat().st_mtime > STALE_TMP_S
        except OSError:
            continue
        fd = lock_path(path) if stale else None
        if fd is not None:
            discard(path, fd)


def peek(path: Path) -> tuple[int, Header | None] | None:
    """(size, header or None) of a segment, read without locking it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_size, parse_header(os.pread(fd, HEADER_SIZE, 0))
    except OSError:
        return None
    finally:
        os.close(fd)


def created_ns(name: str) -> int:
    """The creation time a segment's name starts with (now, if it does not parse)."""
    try:
        return int(name.split("-", 1)[0])
    except ValueError:
        return time.time_ns()


def fsync_directory(directory: Path) -> None:
    """fsync ``directory`` so that the names of new segments survive power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def survey(directory: Path) -> dict[str, Any]:
    """The directory's server, segments, records, bytes allocated and used, creator pids and
    oldest age, read without locking."""
    segments = records = size = used = 0
    owners: set[int] = set()
    oldest: int | None = None
    for name in names(directory):
        found = peek(directory / name)
        if found is None:
            continue
        segments += 1
        size += found[0]
        if found[1] is not None:
            records += found[1].records
            used += found[1].committed
            owners.add(found[1].pid)
        oldest = created_ns(name) if oldest is None else oldest
    age = None if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)
    return {"directory": str(directory), "server": read_server(directory), "segments": segments,
            "records": records, "bytes": size, "bytes_used": used, "owners": sorted(owners),
            "oldest_age_s": age}  # fmt: skip
