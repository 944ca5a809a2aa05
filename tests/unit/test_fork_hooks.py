"""The fork hooks called in this process (no fork): what each one takes, releases and calls.

A private hook registry stands in for the package's, so nothing here touches the real
loggers or registers hooks with the interpreter.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from typing import Any

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


def _mp_registrations() -> tuple[list[Any], list[Any]]:
    from multiprocessing import util

    finalizers = getattr(util, "_finalizer_registry")  # noqa: B009 - private, no accessor
    after_fork = getattr(util, "_afterfork_registry")  # noqa: B009 - private, no accessor
    exits = [
        key for key, f in finalizers.items() if getattr(f, "_callback", None) is _fork._at_exit
    ]
    forks = [
        (key, hook) for key, hook in after_fork.items() if key[2] is _fork._finalize_at_mp_exit
    ]
    return exits, forks


def test_multiprocessing_children_get_the_exit_hook_once(hooks: _fork._Hooks) -> None:
    """With multiprocessing loaded, the exit hook joins its finalizers (priority 10) once,
    and again in each multiprocessing child."""
    hooks.registered = False
    exits, forks = _mp_registrations()
    _fork._watch_multiprocessing()
    _fork._watch_multiprocessing()
    assert hooks.mp_watched
    more_exits, more_forks = _mp_registrations()
    [added] = set(more_exits) - set(exits)
    assert added[0] == 10
    assert [hook for key, hook in more_forks if (key, hook) not in forks] == [hooks]


def test_without_multiprocessing_nothing_is_watched(
    hooks: _fork._Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When multiprocessing was never imported, watching it is left for later."""
    monkeypatch.delitem(sys.modules, "multiprocessing.util")
    _fork._watch_multiprocessing()
    assert not hooks.mp_watched


def test_the_hooks_are_registered_once_with_the_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first tracked object registers the three fork hooks and the exit hook, once."""
    fresh = _fork._Hooks()
    monkeypatch.setattr(_fork, "_hooks", fresh)
    forks: list[dict[str, object]] = []
    exits: list[object] = []
    monkeypatch.setattr(os, "register_at_fork", lambda **hooks: forks.append(hooks))
    monkeypatch.setattr(atexit, "register", exits.append)
    monkeypatch.setattr(_fork, "_watch_multiprocessing", lambda: None)
    _fork.track(Tracked())
    _fork.guard(threading.Lock())
    assert forks == [{"before": _fork._before, "after_in_parent": _fork._after_in_parent,
                      "after_in_child": _fork._after_in_child}]  # fmt: skip
    assert exits == [_fork._at_exit]


def test_alive_tells_running_processes_from_gone_ones() -> None:
    """alive() is true for a running process, false once it is gone or for a pid that
    cannot exist, and it only asks: the process gets no signal."""
    code = (
        "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_DFL); "
        "print('ready', flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"  # SIGHUP would now end it
        assert _fork.alive(child.pid)
        child.terminate()
        assert child.wait(30) == -signal.SIGTERM
    assert not _fork.alive(child.pid)
    assert not _fork.alive(2**40)
    assert _fork.pid() == os.getpid()


def test_a_wiped_cell_starts_at_zero() -> None:
    """Each wiped cell is a fresh zero, in its own page where the kernel wipes pages."""
    first, second = _fork.wiped_cell(), _fork.wiped_cell()
    first[0] = 5
    assert (first[0], second[0]) == (5, 0)
    assert _fork.WIPES is (sys.platform == "linux")
