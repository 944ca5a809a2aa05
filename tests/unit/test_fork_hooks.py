"""The fork hooks called in this process (no fork): what each one takes, releases and calls.

A private hook registry stands in for the package's, so nothing here touches the real
loggers or registers hooks with the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from banyan import _fork


class Tracked:
    """A logger stand-in that records the hooks it got."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _after_fork_in_child(self) -> None:
        self.calls.append("child")

    def _at_exit(self) -> None:
        self.calls.append("exit")


class Owner:
    """An object whose ``_lock`` is held across forks (like the spool)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> _fork._Hooks:
    """A fresh registry, already registered (so no interpreter hook is added)."""
    fresh = _fork._Hooks()
    fresh.registered = True
    monkeypatch.setattr(_fork, "_hooks", fresh)
    return fresh


def test_before_takes_every_lock_and_after_in_parent_releases_them(hooks: _fork._Hooks) -> None:
    """The before hook takes the module locks and the owners' locks; after_in_parent
    releases them all and forgets what it took."""
    module_lock, owner = threading.Lock(), Owner()
    _fork.guard(module_lock)
    _fork.hold(owner)
    _fork._before()
    assert module_lock.locked()
    assert hooks.lock.locked()
    assert hooks.taken == [owner._lock]
    _fork._after_in_parent()
    assert not module_lock.locked()
    assert not hooks.lock.locked()
    assert hooks.taken == []
    assert owner._lock.acquire(blocking=False)
    owner._lock.release()


def test_an_owner_lock_held_too_long_is_not_waited_for(
    hooks: _fork._Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock another thread keeps past HOLD_TIMEOUT is left alone: the fork goes on."""
    monkeypatch.setattr(_fork, "HOLD_TIMEOUT", 0.01)
    owner, held, release = Owner(), threading.Event(), threading.Event()

    def keep() -> None:
        with owner._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=keep)
    thread.start()
    held.wait(10)
    _fork.hold(owner)
    _fork._before()
    assert hooks.taken == []
    _fork._after_in_parent()
    release.set()
    thread.join()


def test_after_in_child_releases_resets_loggers_and_runs_callbacks(hooks: _fork._Hooks) -> None:
    """In the child the locks are released, every tracked logger reset, every callback run."""
    logger, module_lock, ran = Tracked(), threading.Lock(), []
    _fork.track(logger)
    _fork.guard(module_lock, lambda: ran.append(1))
    _fork._before()
    _fork._after_in_child()
    assert (logger.calls, ran, module_lock.locked()) == (["child"], [1], False)
    _fork._at_exit()
    assert logger.calls == ["child", "exit"]


def test_multiprocessing_children_get_the_exit_hook_once(hooks: _fork._Hooks) -> None:
    """With multiprocessing loaded, the exit hook joins its finalizers, registered once."""
    import multiprocessing.util

    _fork._watch_multiprocessing()
    _fork._watch_multiprocessing()
    assert hooks.mp_watched
    finalizers = getattr(multiprocessing.util, "_finalizer_registry")  # noqa: B009 - private
    registered = [f for f in finalizers.values()
                  if getattr(f, "_callback", None) is _fork._at_exit]  # fmt: skip
    assert len(registered) >= 1


def test_alive_tells_running_processes_from_gone_ones() -> None:
    """alive() is true for a running process (even another user's) and false once it is gone
    or for a pid that cannot exist."""
    done = subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert done.returncode == 0
    assert _fork.alive(os.getpid())
    assert _fork.alive(1)
    assert not _fork.alive(2**40)
    assert _fork.pid() == os.getpid()


def test_a_wiped_cell_starts_at_zero() -> None:
    """Each wiped cell is a fresh zero, in its own page where the kernel wipes pages."""
    first, second = _fork.wiped_cell(), _fork.wiped_cell()
    first[0] = 5
    assert (first[0], second[0]) == (5, 0)
    assert _fork.WIPES is (sys.platform == "linux")
