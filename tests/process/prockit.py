"""Helpers for real-process tests: bounded forks, waits and what the server stored."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from serverproc import Server

HERE = Path(__file__).parent
SRC = HERE.parent.parent


def fork_child(body: Callable[[], int], timeout: float = 30.0) -> int:
    """Run ``body`` in a forked child that always leaves by ``os._exit``; its exit code.

    The child is killed (and the test fails) if it takes longer than ``timeout``.
    """
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = body()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked child did not finish within {timeout} s (deadlock?)")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def stored_inputs(server: Server) -> Counter[str]:
    """How many stored records carry each ``input`` (read from the server's database)."""
    found: Counter[str] = Counter()
    with contextlib.closing(sqlite3.connect(f"file:{server.db}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        for row in conn.execute("SELECT * FROM logs"):
            keys = row.keys()
            # Older schemas keep the input in a column, newer ones in the record blob.
            value = (
                row["input"] if "input" in keys else msgspec.msgpack.decode(row["record"])["input"]
            )
            found[value] += 1
    return found


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def options_from_env() -> dict[str, Any]:
    """Options of ``banyan.configure`` from ``BANYAN_TEST_OPTIONS`` (JSON), for the test apps."""
    return dict(json.loads(os.environ.get("BANYAN_TEST_OPTIONS", "{}")))


def child_env(server: Server, **extra: str) -> dict[str, str]:
    """The environment for a child process that configures banyan from ``BANYAN_*``."""
    path = os.pathsep.join([str(HERE), str(SRC), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, BANYAN_API_KEY=server.api_key, BANYAN_BASE_URL=server.base_url)
    return {**env, "PYTHONPATH": path.rstrip(os.pathsep), **extra}


def run_script(name: str, server: Server, *args: object, timeout: float = 90) -> None:
    """Run ``tests/process/<name>`` against ``server`` (its URL and key first, then ``args``)
    in a fresh interpreter; fail with its output unless it exits 0."""
    argv = [sys.executable, str(HERE / name), server.base_url, server.api_key, *map(str, args)]
    result = subprocess.run(
        argv, env=child_env(server), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@contextlib.contextmanager
def running(cmd: list[str], log: Path, **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess logging to ``log``; SIGTERM then SIGKILL on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM ``proc``, SIGKILL it after ``timeout``; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


def marks(folder: Path) -> dict[int, set[str]]:
    """The exit-path marks left by the test apps: pid -> events."""
    out: dict[int, set[str]] = {}
    for path in folder.iterdir():
        pid, event = path.name.split(".", 1)
        out.setdefault(int(pid), set()).add(event)
    return out
