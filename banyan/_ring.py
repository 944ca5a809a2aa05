"""The per-process ring: encoded records waiting for the flusher, bounded in bytes.

Producers (any thread calling ``log_prompt``) push; consumers (the flusher's
workers, or the caller in sync mode) take whole batches.

Pushing usually takes no lock. The ring hands producers a *credit*: a number
of bytes they may append without asking, stored in ``credit[0]``. The fast
path, :meth:`Ring.try_append` (given the record's size), is::

    left = credit[0] - size
    if left >= 0:
        credit[0] = left
        append(data)

There is no call between the load and the store, so under the GIL no other
thread runs in between (CPython checks for a thread switch only at calls and
backward jumps). Without a GIL (a free-threaded build, ``sys._is_gil_enabled()``
False when the ring is made) that is a data race: no credit is granted there,
so every record takes the locked path (issue 15). When the credit runs out,
:meth:`Ring.push`, the slow path,
settles it under a lock: it counts the bytes the credit covered, decides
whether the record fits, wakes the flusher when a threshold is reached and
grants the next credit, which never reaches past the next wake threshold nor
past ``max_bytes``. ``deque.append`` and ``popleft`` are atomic under the
GIL; consumers (serialised by their own lock) only add to ``bytes_out``.

``credit`` lives in a page the kernel zeroes in every forked child (see
:func:`banyan._fork.wiped_cell`), so a child's first record always takes the
slow path, where the logger notices the fork even when the host skipped the
fork hooks. Where nothing wipes the page, and for a ring that must not take
records on the fast path (durable mode, after shutdown), no credit is granted.
Positions (for ``flush``) and counts come from the deque itself, which is exact.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from itertools import accumulate, islice, repeat

from banyan import _fork
from banyan._record import Encoded, gil_enabled


class Ring:
    """A FIFO of encoded records holding at most ``max_bytes`` bytes.

    ``wake`` is called when the backlog reaches ``wake_records`` records or
    ``wake_bytes`` bytes, and again after each further threshold's worth of
    pushes while it stays there; never once per push.
    """

    def __init__(
        self,
        max_bytes: int,
        wake_records: int,
        wake_bytes: int,
        wake: Callable[[], None],
        *,
        fast: bool = True,
    ) -> None:
        self.max_bytes = max_bytes
        self._items: deque[Encoded] = deque()
        self.append = self._items.append
        self.credit = _fork.wiped_cell()
        self._fast = fast and _fork.WIPES and gil_enabled()
        self._granted = 0
        # Re-entrant: a signal handler that logs may interrupt this thread inside push().
        # The inner push is whole (CPython runs handlers only between bytecodes, after
        # calls), and the outer one's later updates are increments or recomputed.
        self._lock = threading.RLock()
        self._take_lock = threading.Lock()
        self._wake_records = wake_records
        self._wake_bytes = wake_bytes
        self._wake = wake
        self._next_wake = (0, 0)
        #: Bytes pushed, up to the last time the credit was settled.
        self.bytes_in = 0
        self.bytes_out = 0
        #: Records ever taken out by a consumer.
        self.popped = 0

    def try_append(self, item: Encoded, size: int) -> bool:
        """The fast path: append ``item`` (``size`` bytes) on credit, without a lock; False
        when the credit does not cover it (then :meth:`push`)."""
        credit = self.credit
        # No call between the load and the store (see the module docstring).
        left = credit[0] - size
        if left >= 0:
            credit[0] = left
            self.append(item)
            return True
        return False

    def push(self, item: Encoded) -> bool:
        """Append ``item``; False when it does not fit (the caller counts why)."""
        size = len(item)
        with self._lock:
            self._settle()
            held = self.bytes_in - self.bytes_out + size
            if held > self.max_bytes:
                return False
            self.append(item)
            self.bytes_in += size
            wake = self._wake_due(held)
            self._grant(held, size)
        if wake:
            self._wake()
        return True

    def _settle(self) -> None:
        # Close the credit (no call between the load and the store) and count what it covered.
        left = self.credit[0]
        self.credit[0] = 0
        self.bytes_in += self._granted - left
        self._granted = 0

    def _wake_due(self, held: int) -> bool:
        pushed = self.popped + len(self._items)
        at_records, at_bytes = self._next_wake
        due = (len(self._items) >= self._wake_records and pushed >= at_records) or (
            held >= self._wake_bytes and self.bytes_in >= at_bytes
        )
        if due:
            self._next_wake = (pushed + self._wake_records, self.bytes_in + self._wake_bytes)
        return due

    def _grant(self, held: int, size: int) -> None:
        # Credit up to the next point where a wake may be due, and never past max_bytes.
        if not self._fast:
            return
        at_records, at_bytes = self._next_wake
        records = max(self._wake_records - len(self._items), at_records - self.popped - len(self))
        to_bytes = max(self._wake_bytes - held, at_bytes - self.bytes_in)
        grant = max(0, min(self.max_bytes - held, to_bytes, records * size))
        # Settle again, inline (no call between the load and the store): a signal handler
        # that logged during the calls above may have granted a credit that others spent.
        left = self.credit[0]
        self.credit[0] = grant
        self.bytes_in += self._granted - left
        self._granted = grant

    def close(self) -> None:
        """Refuse every later push (shutdown)."""
        with self._lock:
            self._settle()
            self._fast = False
            self.max_bytes = 0

    def take(self, max_records: int, max_bytes: int) -> tuple[int, list[Encoded]]:
        """Remove the oldest records up to both limits (always at least one).

        Returns the ring position of the first record and the records; an
        empty list when the ring is empty.
        """
        with self._take_lock:
            items = self._items
            if not items:
                return self.popped, []
            ends = self._ends(min(len(items), max_records))
            count = bisect_right(ends, max_bytes) or 1
            pop = items.popleft
            out = [pop() for _ in repeat(None, count)]
            start = self.popped
            self.bytes_out += ends[count - 1]
            self.popped = start + count
            return start, out

    def _ends(self, count: int) -> list[int]:
        # The running total of the first `count` sizes, computed in C. A producer may
        # append between the iterator's creation and its use (a thread switch after a
        # call), which the deque reports as a RuntimeError; appends only add at the far
        # end, so the first `count` are the same: compute again.
        while True:
            try:
                return list(accumulate(map(len, islice(self._items, count))))
            except RuntimeError:
                continue

    def pushed(self) -> int:
        """Records ever accepted: the position the next push will take."""
        with self._take_lock:
            return self.popped + len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes currently held (read without a lock: exact only when no one pushes)."""
        return self.bytes_in + self._granted - self.credit[0] - self.bytes_out

    def backlog(self) -> bool:
        """Whether at least one wake threshold's worth of records waits."""
        return len(self._items) >= self._wake_records or self.bytes >= self._wake_bytes
