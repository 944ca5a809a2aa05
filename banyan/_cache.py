"""The in-memory prompt cache: entries, LRU bound, counters and the background refresher.

Reads take no lock (one ``dict.get``); inserts and evictions do. An entry
past its TTL is still served (stale-while-revalidate) while the refresher,
one lazy daemon thread per client and process, fetches it again; a key is
queued at most once at a time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from banyan._routing import Router

if TYPE_CHECKING:
    from banyan._promptdata import PromptData
    from banyan._routing import Experiment

K = TypeVar("K")
#: A variant's PromptData attributes, whether it is logged, and its seven ``_wire`` fields
#: before the sticky value (flat: unpacking them and building ``_wire`` in one step is
#: ~35 ns cheaper than ``wire + (value,)``).
Arm = tuple[dict[str, Any], bool, Any, Any, Any, Any, Any, Any, Any]

#: Routed PromptData remembered per entry (one per sticky value) before the memo resets.
ROUTED_MEMO = 4096


class Entry:
    """One cached prompt: its data, its experiment and its freshness."""

    __slots__ = (
        "arms", "body", "experiment", "expires", "prompt", "retry_at", "routed", "router", "used",
    )  # fmt: skip

    def __init__(
        self,
        prompt: PromptData,
        experiment: Experiment | None,
        body: dict[str, Any],
        expires: float,
    ) -> None:
        self.prompt = prompt
        self.experiment = experiment
        self.router = None if experiment is None else Router(experiment)
        self.body = body
        self.expires = expires
        #: No background refresh is queued before this time (backoff after a failure).
        self.retry_at = 0.0
        self.used = 0.0
        #: sticky value -> the PromptData served for it (a memo of the routing decision).
        self.routed: dict[str, PromptData] = {}
        #: Per variant (as ``router.index`` numbers them), what a routed PromptData is
        #: cloned from (see ``Arm``).
        self.arms: list[Arm | None] = [None] * (
            0 if experiment is None else len(experiment.variants)
        )


class Counters:
    """What the prompt cache did, for ``get_stats()['prompt_cache']``.

    ``hits`` and ``stale`` are bumped on the hot path without a lock and may
    undercount slightly when many threads read at once.
    """

    def __init__(self) -> None:
        self.hits = 0
        self.stale = 0
        self.misses = 0
        self.refreshes = 0
        self.refresh_failures = 0
        self.disk_served = 0
        self.disk_errors = 0
        self.fallbacks = 0
        self.evicted_404 = 0
        self.evicted_lru = 0

    def snapshot(self, size: int) -> dict[str, int]:
        """The counters as a dict, plus the number of cached entries."""
        return {**vars(self), "size": size}


def evict_lru(entries: dict[K, Entry], limit: int) -> int:
    """Drop the least recently used entries past ``limit``; returns how many went."""
    gone = 0
    while len(entries) > limit:
        victim = min(entries, key=lambda k: entries[k].used)
        del entries[victim]
        gone += 1
    return gone


class Refresher(Generic[K]):
    """Runs ``work(key)`` on one daemon thread; a key already queued is not queued again."""

    def __init__(self, work: Callable[[K], None], idle: float = 30.0) -> None:
        self._work = work
        self._idle = idle
        self._lock = threading.Lock()
        self._pending: set[K] = set()
        self._queue: queue.SimpleQueue[tuple[K] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, key: K) -> bool:
        """Queue a refresh of ``key``; False when one is already pending (or closed)."""
        with self._lock:
            if self._closed or key in self._pending:
                return False
            self._pending.add(key)
            self._queue.put((key,))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="banyan-prompt-refresh", daemon=True
                )
                self._thread.start()
        return True

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle)
            except queue.Empty:
                # Exit when idle; submit() starts a new thread under the same lock.
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if item is None:
                return
            try:
                self._work(item[0])
            finally:
                with self._lock:
                    self._pending.discard(item[0])

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread after its current refresh (waiting at most ``timeout``)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
