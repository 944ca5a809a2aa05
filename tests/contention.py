"""Threads that run one function at once, switching as often as CPython allows."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def contended(produce: Callable[[int], None], threads: int, timeout: float = 60) -> None:
    """Run ``produce(t)`` for t in range(threads), released together, under a 10 us switch
    interval (so that bytecode-level interleavings happen); join each by ``timeout``."""
    start = threading.Barrier(threads)

    def run(t: int) -> None:
        start.wait(10)
        produce(t)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout)
    finally:
        sys.setswitchinterval(interval)
