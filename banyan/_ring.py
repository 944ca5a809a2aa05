"""The per-process ring: encoded records waiting for the flusher, bounded in bytes.

Producers (any thread calling ``log_prompt``) push; consumers (the flusher's
workers, or the caller in sync mode) take whole batches.

The push takes no lock. ``deque.append`` and ``popleft`` are atomic under the
GIL, and the byte count is split in two single-direction counters: producers
only add to ``bytes_in``, consumers (serialised by their own lock) only add to
``bytes_out``, so a consumer can never undo a producer's update. An
uncontended ``threading.Lock`` pair measured ~200-400 ns per call here, a
quarter of the whole budget. Positions (for ``flush``) and counts come from
the deque itself, which is exact. Refusals, the rare path, take a lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class Ring:
    """A FIFO of encoded records holding at most ``max_bytes`` bytes.

    ``wake`` is called only when a push *crosses* the record-count or byte
    threshold, so the hot path does not pay for an ``Event.set()`` per call.
    """

    def __init__(
        self, max_bytes: int, wake_records: int, wake_bytes: int, wake: Callable[[], None]
    ) -> None:
        self.max_bytes = max_bytes
        self._items: deque[bytes] = deque()
        self._append = self._items.append
        self._lock = threading.Lock()
        self._take_lock = threading.Lock()
        self._wake_records = wake_records
        self._wake_bytes = wake_bytes
        self._wake = wake
        self.bytes_in = 0
        self.bytes_out = 0
        #: Records ever taken out by a consumer.
        self.popped = 0
        #: Records refused because the ring was full.
        self.full = 0

    def push(self, item: bytes) -> bool:
        """Append ``item``; False (and counted in ``full``) when it does not fit."""
        size = len(item)
        total = self.bytes_in - self.bytes_out + size
        if total > self.max_bytes:
            return self._refuse()
        self._append(item)
        # Only producers write bytes_in; under the GIL `+=` on it is not split
        # by a thread switch (no call between its load and store).
        self.bytes_in += size
        if len(self._items) == self._wake_records or total >= self._wake_bytes > total - size:
            self._wake()
        return True

    def _refuse(self) -> bool:
        with self._lock:
            self.full += 1
        return False

    def reclassify(self) -> None:
        """Uncount one refusal from ``full``: the caller counts it under its real reason."""
        with self._lock:
            self.full -= 1

    def take(self, max_records: int, max_bytes: int) -> tuple[int, list[bytes]]:
        """Remove the oldest records up to both limits (always at least one).

        Returns the ring position of the first record and the records; an
        empty list when the ring is empty.
        """
        with self._take_lock:
            items = self._items
            out: list[bytes] = []
            size = 0
            while items and len(out) < max_records:
                item = items[0]
                if out and size + len(item) > max_bytes:
                    break
                out.append(items.popleft())
                size += len(item)
            start = self.popped
            self.bytes_out += size
            self.popped = start + len(out)
            return start, out

    def pushed(self) -> int:
        """Records ever accepted: the position the next push will take."""
        with self._take_lock:
            return self.popped + len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes currently held."""
        return self.bytes_in - self.bytes_out

    def backlog(self) -> bool:
        """Whether at least one wake threshold's worth of records waits."""
        return len(self._items) >= self._wake_records or self.bytes >= self._wake_bytes
