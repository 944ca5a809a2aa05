"""Process lifecycle: the package's one ``os.register_at_fork`` and its exit hook.

Loggers register here through weak references. In a forked child each gets
new locks, an empty ring, a new id prefix and a new HTTP client (the
parent's connections are never touched), and its flusher restarts lazily.
Hosts that fork without running the hooks (uWSGI without
``--py-call-uwsgi-fork-hooks``) are caught by the pid check on the hot path.
Nothing here blocks on the network before a fork.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Protocol


class Forkable(Protocol):
    """What a logger offers to the lifecycle hooks."""

    def _after_fork_in_child(self) -> None: ...

    def _at_exit(self) -> None: ...


class _Hooks:
    def __init__(self) -> None:
        self.live: weakref.WeakSet[Forkable] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.registered = False


_hooks = _Hooks()


def track(obj: Forkable) -> None:
    """Reset ``obj`` in forked children and flush it at interpreter exit."""
    with _hooks.lock:
        _hooks.live.add(obj)
        if _hooks.registered:
            return
        _hooks.registered = True
    os.register_at_fork(after_in_child=_after_in_child)
    atexit.register(_at_exit)


def _after_in_child() -> None:
    # The parent's lock may have been held by another thread at fork time.
    _hooks.lock = threading.Lock()
    for obj in list(_hooks.live):
        obj._after_fork_in_child()


def _at_exit() -> None:
    for obj in list(_hooks.live):
        obj._at_exit()
