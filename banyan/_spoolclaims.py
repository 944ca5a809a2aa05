"""The spool's segments once written: claimed for replay, acknowledged, put back, purged,
handed over at close, and dropped in a forked child.

Mixed into :class:`~banyan._spool.Spool` (which writes them): both halves share
its lock and its tables of the segments this process holds: ``_sealed`` (made
here, sealed), ``_claimed`` (taken for a replay) and ``_active`` (being written).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from banyan import _spooldir as sd
from banyan._segment import Segment

if TYPE_CHECKING:
    from banyan._segment import Writer


class SegmentClaims:
    """Claiming, acknowledging and handing over segments (see the module docstring)."""

    directory: Path
    _lock: threading.RLock
    _pid: int
    _writer: Writer | None
    _active: tuple[str, int] | None
    _spare: tuple[Path, int] | None
    _preparing: tuple[Path, int] | None
    _sealed: dict[str, int]
    _claimed: dict[str, int]
    _unsynced: list[int]
    _syncing: list[int]
    _retry_at: float
    _closed: bool
    replayed: int
    corrupt_frames: int
    corrupt_bytes: int
    lost: int
    purged: int
    handed_over: int
    spooled: int
    evicted: int
    dropped: dict[str, int]
    last_error: str | None

    if TYPE_CHECKING:

        def _reset(self) -> None: ...
        def _seal_active(self) -> None: ...
        def seal(self) -> None: ...

    def _guard(self, fn: Callable[[Any], None], arg: Any) -> None:
        try:
            fn(arg)
        except OSError as exc:
            self.last_error = f"spool: {exc}"

    def claim(self) -> Segment | None:
        """Lock and return the oldest sealed segment no live process holds, or None.

        That is one this process holds (sealed, or put back after a failed
        replay), or one left by a dead or closed process. The active segment
        is never returned: :meth:`seal` it first. None too when the directory
        is not private (:func:`banyan._spooldir.check_private`).
        """
        self._check_pid()
        try:
            sd.check_private(self.directory)
        except OSError as exc:
            self.last_error = f"spool: {exc}"
            return None
        sd.clean_tmp(self.directory)
        for name in sd.names(self.directory):
            with self._lock:
                fd = self._take(name)
                if fd is not None:
                    self._claimed[name] = fd
            if fd is not None:
                return Segment(self.directory / name, fd, self._pid)
        return None

    def ack(self, segment: Segment) -> bool:
        """The segment's records were delivered: delete it, then drop its lock.

        False when this process no longer holds it (closed, or forked since): it
        stays for a later replay, which the server answers with duplicates.
        """
        with self._lock:
            fd = self._finish(segment)
            if fd is None:
                return False
            # Unlinked while still locked: a process that opened the path
            # earlier fails lock_path's inode check once it gets the lock.
            sd.discard(segment.path, fd)
            self.replayed += segment.good
            self.corrupt_frames += segment.damage.frames
            self.corrupt_bytes += segment.damage.bytes
            self.lost += segment.lost
            self._retry_at = 0.0
        return True

    def put_back(self, segment: Segment) -> None:
        """Replay failed: keep the segment locked, for this process to claim again.

        Unlocking it would let ``banyan spool purge`` or another process take
        records this one still counts as spooled (issue 14): a segment is held
        from its creation until it is acknowledged, or handed over by :meth:`close`.
        """
        with self._lock:
            fd = self._finish(segment)
            if fd is not None:
                self._sealed[segment.name] = fd

    def _finish(self, segment: Segment) -> int | None:
        """Take back the descriptor of a segment this very process claimed."""
        if segment.pid != self._pid or self._claimed.get(segment.name) != segment.fd:
            return None
        return self._claimed.pop(segment.name)

    def _take(self, name: str) -> int | None:
        """A locked descriptor for ``name`` if no one else holds it (caller holds the lock)."""
        if name in self._sealed:
            return self._sealed.pop(name)
        if name in self._claimed or (self._active is not None and self._active[0] == name):
            return None
        return sd.lock_path(self.directory / name)

    def purge(self) -> int:
        """Delete every segment no other process holds; returns the records deleted."""
        self.seal()
        deleted = 0
        for name in sd.names(self.directory):
            with self._lock:
                fd = None if name in self._claimed else self._take(name)
                if fd is not None:
                    deleted += sd.delete(self.directory / name, fd)
        self.purged += deleted
        return deleted

    def close(self) -> int:
        """Seal the active segment and unlock everything, so the next process replays it.

        Returns the records handed over so (counted in ``handed_over``): those of
        every segment this process held, a half-replayed one whole, as the next
        process sends it again.
        """
        self._check_pid()
        with self._lock:
            self._seal_active()
            held = [*self._sealed.values(), *self._claimed.values()]
            left = sum(sd.records_in(fd) for fd in held)
            self.handed_over += left
            for fd in held:
                os.close(fd)
            for fd in self._unsynced:
                self._guard(os.fdatasync, fd)
                os.close(fd)
            if self._spare is not None:
                sd.discard(*self._spare)
            self._sealed, self._claimed, self._unsynced, self._spare = {}, {}, [], None
            self._closed = True
        return left

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self.after_fork_in_child()

    def after_fork_in_child(self) -> None:
        """Drop the parent's segments without unlocking them; the next append opens a new one.

        Closing the inherited descriptors leaves the parent's locks in place
        (its own descriptors share the open file descriptions); ``LOCK_UN``
        would release them.
        """
        if self._writer is not None:
            self._writer.close()
        held = [*self._sealed.values(), *self._claimed.values(), *self._unsynced, *self._syncing]
        pairs = (self._active, self._spare, self._preparing)
        held += [pair[1] for pair in pairs if pair is not None]
        for fd in held:
            with contextlib.suppress(OSError):
                os.close(fd)
        closed = self._closed
        self._reset()
        self._closed = closed

    def status(self) -> dict[str, Any]:
        """What the directory holds (:func:`banyan._spooldir.survey`), plus counters."""
        return {
            **sd.survey(self.directory),
            "spooled": self.spooled,
            "replayed": self.replayed,
            "corrupt_frames": self.corrupt_frames,
            "corrupt_bytes": self.corrupt_bytes,
            "lost": self.lost,
            "evicted": self.evicted,
            "purged": self.purged,
            "handed_over": self.handed_over,
            "dropped": dict(self.dropped),
            "last_error": self.last_error,
        }
