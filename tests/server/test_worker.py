"""The worker process's allocator settings, checked in a fresh interpreter."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

from banyan.server import _app

# Allocates a body-sized bytes object and says whether glibc took it from the
# heap (reused after free) or from a fresh mmap (faulted in again every time).
_SCRIPT = """
import sys
from banyan.server import _app
if sys.argv[1] == "keep":
    assert _app.keep_freed_memory()
body = bytes(24 * 1024 * 1024)
address = id(body)
for line in open("/proc/self/maps"):
    bounds, rest = line.split(" ", 1)
    start, end = (int(x, 16) for x in bounds.split("-"))
    if start <= address < end:
        print("heap" if rest.rstrip().endswith("[heap]") else "mmap")
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize(("mode", "where"), [("keep", "heap"), ("default", "mmap")])
def test_worker_allocates_batch_bodies_from_memory_it_keeps(mode: str, where: str) -> None:
    """After keep_freed_memory a 24 MiB body comes from the heap, not a fresh mmap."""
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [where]


def test_keep_freed_memory_is_false_without_mallopt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C library without mallopt (musl, macOS) is left alone and reported as such."""
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    assert _app.keep_freed_memory() is False
