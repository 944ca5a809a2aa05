"""The disk spool: encoded records kept in segment files until they are replayed.

One directory per project (``_spooldir``), mode 0700, holds segment files
(mode 0600, format in ``_segment``). A process appends to one active segment
of its own, seals it when full, and holds the lock of every segment it
created or claimed until the segment is acknowledged (deleted) or the spool
is closed (handed over on purpose); a failed replay keeps the lock. A
segment nobody holds (its writer died or closed its spool) is claimed by
exactly one live process, which holds it from then on. Appends are a lock,
a CRC and two slice copies into an mmap.

flock locks belong to the open file description, which a forked child
shares: a lock goes when *all* its descriptors are closed, or on an explicit
``LOCK_UN`` through any of them (flock(2)). So :meth:`Spool.after_fork_in_child`
closes the inherited descriptors and unmaps, never unlocks, and the child
opens its own segment on its next append. Nothing here calls ``LOCK_UN``.
The owner calls that method from its at-fork hook and its hot-path pid
check: ``append`` itself does not check (``os.getpid`` is a ~0.2 us syscall).

Durability, ``sync=``:

* ``"none"``: frames sit in the page cache. Survives the process dying in
  any way, kill -9 included; not a kernel crash or power loss.
* ``"interval"``: as "none", plus ``maybe_sync()`` (called by the flusher)
  fdatasyncs the segments at most every ``sync_interval`` seconds: a power
  loss loses at most about that window.
* ``"always"``: msync after every append, before it returns: an appended
  record survives power loss. Costs a disk flush per record.

Losses are counted in ``dropped`` under the ``DropReason`` values
``spool_full`` (``max_total_bytes`` reached and nothing evictable),
``spool_error`` (the filesystem refused, e.g. ENOSPC), ``too_large`` and
``closed``. After a refusal, appends fail fast for ``retry_after`` seconds
(an ``ack`` ends that early). ``max_total_bytes`` is enforced when a segment
is created, by deleting the oldest segments nobody holds (``evicted`` counts
their records); processes racing may overshoot it by a segment each.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from banyan import _fork
from banyan import _spooldir as sd
from banyan._record import Encoded
from banyan._segment import FRAME_SIZE, HEADER_SIZE, Writer
from banyan._spoolclaims import SegmentClaims
from banyan._stats import DropReason

SyncMode = Literal["none", "interval", "always"]
#: The smallest segment made when the disk has no room for one of ``segment_bytes``.
MIN_SEGMENT_BYTES = 64 << 10
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


class Spool(SegmentClaims):
    """Segment files in one directory, shared by every process of a project.

    Thread-safe. ``append`` never raises: it returns False and counts the
    reason in ``dropped``. ``wake`` is called once per segment, when the
    active one is half full and no spare is ready: the owner should then
    call :meth:`prepare` off the hot path (the attribute can be reassigned,
    as a logger does in each process).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        project: str | None = None,
        segment_bytes: int = 4 << 20,
        max_total_bytes: int = 256 << 20,
        sync: SyncMode = "none",
        sync_interval: float = 1.0,
        retry_after: float = 1.0,
        wake: Callable[[], None] | None = None,
        server: Mapping[str, str | None] | None = None,
    ) -> None:
        if sync not in ("none", "interval", "always"):
            raise ValueError(f"sync must be 'none', 'interval' or 'always', not {sync!r}")
        if segment_bytes < HEADER_SIZE + FRAME_SIZE:
            raise ValueError(f"segment_bytes must be at least {HEADER_SIZE + FRAME_SIZE}")
        self.directory = Path(directory) if directory is not None else sd.default_directory(project)
        self.segment_bytes = segment_bytes
        self.max_total_bytes = max_total_bytes
        self.sync = sync
        self._always = sync == "always"
        self.sync_interval = sync_interval
        self.retry_after = retry_after
        self.wake = wake
        #: The server and project the records are for, kept beside them (``sd.SERVER_FILE``).
        self.server = server
        self._server_written = False
        self._reset()
        _fork.hold(self)

    def _reset(self) -> None:
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._seq = 0
        self._writer: Writer | None = None
        self._active: tuple[str, int] | None = None
        self._spare: tuple[Path, int] | None = None
        self._sealed: dict[str, int] = {}
        self._claimed: dict[str, int] = {}
        self._unsynced: list[int] = []
        #: Descriptors in use outside the lock: a spare being zero-filled, dups being synced.
        self._preparing: tuple[Path, int] | None = None
        self._syncing: list[int] = []
        self._half = self.segment_bytes // 2
        self._next_sync = 0.0
        self._retry_at = 0.0
        self._refusal = "spool_error"
        self._closed = False
        self.spooled = 0
        self.replayed = 0
        self.corrupt_frames = 0
        self.corrupt_bytes = 0
        self.lost = 0
        self.evicted = 0
        self.purged = 0
        self.handed_over = 0
        self.dropped: dict[str, int] = {}
        self.last_error: str | None = None

    # -- writing -----------------------------------------------------------

    def append(self, record: Encoded) -> bool:
        """Frame ``record`` into the active segment; False (counted) when refused."""
        return self.add(record) is None

    def add(self, record: Encoded) -> DropReason | None:
        """Frame ``record`` into the active segment; why it was refused (counted), else None."""
        lock = self._lock
        if lock._is_owned():  # type: ignore[attr-defined]
            # A signal handler interrupted this thread inside the spool: writing now could
            # undo the interrupted step. Refused; a logger keeps the record in memory.
            self.last_error = "spool: re-entered from a signal handler"
            return self._drop("spool_error")
        # acquire/release rather than `with`: ~0.15 us less on durable log_prompt's path.
        lock.acquire()
        try:
            writer = self._writer
            if writer is None or not writer.append(record):
                return self._append_slow(record)
            self.spooled += 1
            if self._always:
                writer.flush()
            if writer.pos > self._half and self._spare is None:
                self._half = self.segment_bytes
                if self.wake is not None:
                    self.wake()
            return None
        finally:
            lock.release()

    def append_many(self, records: list[Encoded]) -> int:
        """Append each record in order; returns how many were accepted."""
        return self.add_many(records)[0]

    def add_many(self, records: list[Encoded]) -> tuple[int, dict[DropReason, int]]:
        """Append each record in order: how many were accepted, and how many were refused
        for each reason."""
        kept, refused = 0, dict[DropReason, int]()
        for record in records:
            refusal = self.add(record)
            if refusal is None:
                kept += 1
            else:
                refused[refusal] = refused.get(refusal, 0) + 1
        return kept, refused

    def _append_slow(self, record: Encoded) -> DropReason | None:
        if self._closed:
            return self._drop("closed")
        if HEADER_SIZE + FRAME_SIZE + len(record) > self.segment_bytes:
            return self._drop("too_large")
        if time.monotonic() < self._retry_at:
            return self._drop(self._refusal)
        self._seal_active()
        refusal = self._open_segment(HEADER_SIZE + FRAME_SIZE + len(record))
        if refusal is not None:
            self._refusal = refusal
            self._retry_at = time.monotonic() + self.retry_after
            return self._drop(refusal)
        assert self._writer is not None
        self._writer.append(record)
        self.spooled += 1
        if self._always:
            self._writer.flush()
        return None

    def _drop(self, reason: str) -> DropReason:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return DropReason(reason)

    def _open_segment(self, need: int) -> str | None:
        """Map a new active segment (the spare if one is ready); the drop reason on failure."""
        try:
            if self._spare is None:
                self._make_directory()
                if not self._make_room():
                    self.last_error = f"spool over max_total_bytes={self.max_total_bytes}"
                    return "spool_full"
                self._spare = self._allocate(need)
            tmp, fd = self._spare
            self._spare = None
            created = time.time_ns()
            path = self._next_path(sd.SUFFIX, created)
            self._writer = sd.activate(fd, tmp, path, self._pid, created)
            # Tracked before the directory fsync: if that fails, later records still go to a
            # segment that seal, claim and close know of.
            self._active = (path.name, fd)
            self._half = self.segment_bytes // 2
            if self.sync == "always":
                sd.fsync_directory(self.directory)
        except OSError as exc:
            self.last_error = f"spool: {exc}"
            return "spool_error"
        return None

    def _allocate(self, need: int) -> tuple[Path, int]:
        """A new zero-filled segment; smaller ones, down to ``MIN_SEGMENT_BYTES`` (or ``need``),
        while the disk has no room for a whole one (a 3 MiB tmpfs, issue 14)."""
        size = self.segment_bytes
        while True:
            try:
                return sd.allocate(self._next_path(sd.TMP), size)
            except OSError as exc:
                smaller = max(size // 4, MIN_SEGMENT_BYTES, need)
                if exc.errno not in _NO_ROOM or smaller >= size:
                    raise
                size = smaller

    def _make_directory(self) -> None:
        """Create the directory if missing (raises OSError), with its server file once."""
        sd.make_directory(self.directory)
        server = self.server
        if server is not None and not self._server_written:
            self._server_written = True
            # Only `banyan spool status|replay` read it: no reason to refuse records.
            self._guard(lambda directory: sd.write_server(directory, server), self.directory)

    def _next_path(self, suffix: str, created: int | None = None) -> Path:
        self._seq += 1
        created = time.time_ns() if created is None else created
        return self.directory / f"{created:020d}-{self._pid}-{self._seq:06d}{suffix}"

    def _make_room(self) -> bool:
        """Evict the oldest segments nobody holds until a new one fits (caller holds the lock)."""
        segments, total = sd.listing(self.directory)
        total += self.segment_bytes
        for name, size in segments:
            if total <= self.max_total_bytes:
                break
            fd = self._take(name)
            if fd is not None:
                self.evicted += sd.delete(self.directory / name, fd)
                total -= size
        return total <= self.max_total_bytes

    def prepare(self) -> None:
        """Allocate the next segment now, off the hot path (the flusher calls this).

        Zero-filling a 4 MiB segment takes ~15 ms on ext4; prepared here, a
        rollover in ``append`` costs a rename and an mmap.
        """
        self._check_pid()
        with self._lock:
            if self._spare is not None or self._preparing is not None or self._closed:
                return
            try:
                self._make_directory()
                # At the bound this evicts what append's rollover would evict next anyway,
                # here on the thread that also replays, so never a segment being replayed.
                room = self._make_room()
            except OSError as exc:
                self.last_error = f"spool: {exc}"
                return
            if not room:
                return
            path = self._next_path(sd.TMP)
            try:
                # Created under the lock and listed, so that a fork during the slow
                # zero-fill leaves the child a descriptor it knows to close.
                pair = (path, sd.create(path))
            except OSError as exc:
                self.last_error = f"spool: {exc}"
                return
            self._preparing = pair
        filled = True
        try:
            sd.fill(pair[1], self.segment_bytes)
        except OSError as exc:
            self.last_error = f"spool: {exc}"
            filled = False
        with self._lock:
            self._preparing = None
            # While the spare was zero-filled without the lock, append may have rolled
            # over to a segment of its own (it counted the spare at its size so far): the
            # spare stays only if everything, the spare included, fits. It is not worth
            # evicting records for; append allocates (and evicts) when it needs one.
            fits = sd.listing(self.directory)[1] <= self.max_total_bytes
            keep = filled and fits and self._spare is None and not self._closed
            if keep:
                self._spare = pair
            else:
                sd.discard(*pair)

    def _seal_active(self) -> None:
        """Close the active segment for writing; this process keeps its lock."""
        if self._writer is None or self._active is None:
            return
        name, fd = self._active
        self._writer.close()
        self._writer = None
        self._active = None
        self._sealed[name] = fd
        if self.sync == "interval":
            self._unsynced.append(os.dup(fd))

    def seal(self) -> None:
        """Seal the active segment now so that :meth:`claim` can return it."""
        self._check_pid()
        with self._lock:
            self._seal_active()

    def maybe_sync(self) -> None:
        """In ``sync="interval"`` mode, fdatasync at most every ``sync_interval`` s."""
        now = time.monotonic()
        if self.sync != "interval" or now < self._next_sync:
            return
        self._next_sync = now + self.sync_interval
        self._check_pid()
        with self._lock:
            fds, self._unsynced = self._unsynced, []
            if self._active is not None:
                fds.append(os.dup(self._active[1]))
            # Listed while they are synced without the lock: a fork meanwhile leaves the
            # child descriptors (and so the segments' locks) it knows to close.
            self._syncing += fds
        if fds:
            self._guard(sd.fsync_directory, self.directory)
        for fd in fds:
            self._guard(os.fdatasync, fd)
        with self._lock:
            for fd in fds:
                self._syncing.remove(fd)
                os.close(fd)
