"""Process lifecycle: the package's one ``os.register_at_fork`` and its exit hook.

Loggers register here through weak references. In a forked child each gets
new locks, an empty ring, a new id prefix and a new HTTP client (the
parent's connections are never touched), and its flusher restarts lazily;
what the parent had buffered stays the parent's to deliver. Hosts that fork
without running the hooks (uWSGI without ``--py-call-uwsgi-fork-hooks``) are
caught on the hot path all the same: the ring's credit lives in a page the
kernel zeroes in every child, hooks or not (:func:`wiped_cell`), so a
child's first record takes the slow path, which compares pids.

The three hooks:

- *before*: takes the package's short module locks (the registry's and the
  default logger's, never held across I/O), so the child inherits them in a
  consistent state. Nothing here blocks on the network, flushes or joins a
  thread: a flusher mid-request simply carries on in the parent.
- *after in parent*: releases those locks.
- *after in child*: releases them too (the forking thread, the only one left,
  holds them), then resets every live logger and runs the module callbacks.

multiprocessing ends fork and forkserver children with ``os._exit``, so
atexit never runs there; its own exit finalizers do, and the flush joins them.
"""

from __future__ import annotations

import atexit
import mmap
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Protocol


class Forkable(Protocol):
    """What a logger offers to the lifecycle hooks."""

    def _after_fork_in_child(self) -> None: ...

    def _at_exit(self) -> None: ...


class Locked(Protocol):
    """An object whose state changes under ``_lock`` (see :func:`hold`)."""

    _lock: threading.RLock


#: How long the *before* hook waits for an object's lock before forking without it.
HOLD_TIMEOUT = 5.0


class _Hooks:
    def __init__(self) -> None:
        self.live: weakref.WeakSet[Forkable] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.registered = False
        #: Module-level short locks taken across the fork (see the module docstring).
        self.guarded: list[threading.Lock] = [self.lock]
        self.in_child: list[Callable[[], None]] = []
        #: Objects whose ``_lock`` is taken across the fork too (see :func:`hold`).
        self.owners: weakref.WeakSet[Locked] = weakref.WeakSet()
        #: The owners' locks the last *before* hook took.
        self.taken: list[threading.RLock] = []
        self.mp_watched = False


_hooks = _Hooks()


def _wiped_on_fork() -> memoryview | None:
    # madvise(2) MADV_WIPEONFORK (18, Linux 4.14+; Python 3.11 does not name it): every forked
    # child sees this private page zeroed, however it forked.
    if sys.platform != "linux":
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        page.madvise(getattr(mmap, "MADV_WIPEONFORK", 18))
    except (AttributeError, OSError, ValueError):
        return None
    return memoryview(page).cast("q")


def wiped_cell() -> memoryview:
    """A fresh int64 cell, ``cell[0] == 0``, in its own page; it reads 0 in every forked child.

    Where nothing wipes pages on fork (see :data:`WIPES`) the cell is plain memory.
    """
    return _wiped_on_fork() or memoryview(bytearray(8)).cast("q")


#: Whether the kernel wipes :func:`wiped_cell` pages in forked children (Linux 4.14+).
WIPES = _wiped_on_fork() is not None


def pid() -> int:
    """This process's pid."""
    return os.getpid()


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def track(obj: Forkable) -> None:
    """Reset ``obj`` in forked children and flush it at interpreter exit."""
    with _hooks.lock:
        _hooks.live.add(obj)
    _register()


def guard(lock: threading.Lock, in_child: Callable[[], None] | None = None) -> None:
    """Hold ``lock`` across every fork; call ``in_child`` in each forked child.

    For module-level state only: ``lock`` must never be held across I/O.
    """
    with _hooks.lock:
        _hooks.guarded.append(lock)
        if in_child is not None:
            _hooks.in_child.append(in_child)
    _register()


def hold(owner: Locked) -> None:
    """Take ``owner._lock`` across every fork, after the module locks.

    For an object whose lock guards files it opens and closes (the spool): a
    fork in the middle of such a change would leave the child descriptors no
    list of the object names, and so locks on files it cannot release. The
    lock may be held across local disk I/O (milliseconds), never the network;
    a lock not free within HOLD_TIMEOUT is not waited for.
    """
    with _hooks.lock:
        _hooks.owners.add(owner)
    _register()


def _register() -> None:
    with _hooks.lock:
        if _hooks.registered:
            return
        _hooks.registered = True
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
    atexit.register(_at_exit)
    _watch_multiprocessing()


def _watch_multiprocessing() -> None:
    # Only where multiprocessing is loaded already: `import banyan` must stay light, and
    # a parent that forks through multiprocessing has always imported it before the fork.
    util = sys.modules.get("multiprocessing.util")
    if util is None or _hooks.mp_watched:
        return
    _hooks.mp_watched = True
    # Process._bootstrap clears the exit finalizers in each child, then runs the after-forkers.
    util.register_after_fork(_hooks, _finalize_at_mp_exit)
    _finalize_at_mp_exit(_hooks)


def _finalize_at_mp_exit(_: object) -> None:
    util = sys.modules["multiprocessing.util"]
    util.Finalize(None, _at_exit, exitpriority=10)


def _before() -> None:
    # In registration order; every other path takes at most one of these at a time.
    for lock in _hooks.guarded:
        lock.acquire()
    for owner in list(_hooks.owners):
        held = owner._lock
        if held.acquire(timeout=HOLD_TIMEOUT):
            _hooks.taken.append(held)


def _after_in_parent() -> None:
    taken, _hooks.taken = _hooks.taken, []
    for held in reversed(taken):
        held.release()
    for lock in reversed(_hooks.guarded):
        lock.release()


def _after_in_child() -> None:
    _after_in_parent()
    for obj in list(_hooks.live):
        obj._after_fork_in_child()
    for callback in _hooks.in_child:
        callback()
    _watch_multiprocessing()


def _at_exit() -> None:
    for obj in list(_hooks.live):
        obj._at_exit()
