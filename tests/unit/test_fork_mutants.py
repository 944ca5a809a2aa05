"""Fork handling's corner a planted bug once survived (mutants of _fork.py, #21)."""

from __future__ import annotations

import os

import pytest

from banyan import _fork


def test_a_process_of_another_user_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pid that signal 0 may not reach (another user's process) exists: it is alive, so
    its temporary prompt cache file is left to it."""

    def refused(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refused)
    assert _fork.alive(12345)
