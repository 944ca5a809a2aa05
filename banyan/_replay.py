"""Replay: spooled segments back to the server, between live batches.

One segment at a time per process, oldest first: :meth:`Spool.claim` hands
out this process's sealed segments and those of dead processes, each to
exactly one process. A step sends one batch, and the flusher alternates
steps with live batches, so neither starves the other. A segment is
acknowledged (deleted) once each of its records was accepted, found a
duplicate, or rejected for good; after a failure this process keeps it
locked (so no purge or other process takes it) and tries again
after a backoff that a live success ends early (the server's Retry-After at
least). The records of a failed attempt that the server took are remembered,
per segment and in memory, and not sent again by this process: a 1.0.1
server stores every copy it is sent (review item 2). A segment's counters
join the logger's ledger only at its ack; a record whose outcome was unknown is
sent again and counted in ``possible_duplicates`` (by the delivery).

:meth:`Spool.claim` never returns the active segment, so a step first seals
it when records were appended since the last seal and ``seal_interval`` has
passed or a flush asked. In durable mode that is every record's way out; in
buffered mode, the way out of whatever overflowed or failed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from banyan._record import Encoded
from banyan._stats import DropReason, Stats

if TYPE_CHECKING:
    from banyan._delivery import Delivery
    from banyan._ledger import Ledger
    from banyan._segment import Segment
    from banyan._spool import Spool

#: Reads of a segment that fail (OSError) before it is given up as unreadable.
UNREADABLE_TRIES = 3
#: Durable mode has no live traffic to tell that the server is back: probe at least this often.
MAX_BACKOFF = 10.0


class Replayer:
    """Claims, sends and acknowledges spooled segments for one logger.

    ``deliver`` builds a Delivery (one per segment, counting into the segment's
    tally); ``healthy`` returns when the live path last got a 2xx.
    """

    def __init__(
        self,
        spool: Spool,
        deliver: Callable[[], Delivery],
        stats: Ledger,
        *,
        batch: tuple[int, int],
        seal_interval: float,
        backoff: tuple[float, float],
        healthy: Callable[[], float],
        prepare: bool,
    ) -> None:
        self.spool = spool
        self._deliver = deliver
        self._stats = stats
        self._batch = batch
        self._seal_interval = seal_interval
        self._backoff = backoff
        self._healthy = healthy
        self._prepare = prepare
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._segment: Segment | None = None
        #: The segment's records not yet taken, with their place in it.
        self._records: Iterator[tuple[int, bytes]] = iter(())
        self._pending: tuple[int, bytes] | None = None
        self._scratch = stats.scratch()
        #: By segment name: the places of the records the server took (or refused for
        #: good), and the counters, across failed attempts until the ack.
        self._progress: dict[str, tuple[set[int], Stats]] = {}
        self._taken: set[int] = set()
        #: The records of the last batch that the delivery gave up on, and why.
        self._left: list[Encoded] = []
        self._left_reason = DropReason.RETRIES_EXHAUSTED
        self._delivery: Delivery | None = None
        self._seal_mark = 0
        self._sealed_at = time.monotonic()
        self._failures = 0
        self._failed_at = 0.0
        self._not_before = 0.0
        self._rescan_at = 0.0
        #: Failed reads so far, by segment name.
        self._unreadable: dict[str, int] = {}
        #: The server refused the key at the last attempt: the segments are held for a process
        #: whose key it accepts, and ``flush()`` is not done.
        self.key_refused = False
        self.prepare_wanted = False
        # Flush generations: asked, sealed, and settled by idleness or by failure.
        self._wanted = self._sealed_gen = self._idle_gen = self._failed_gen = 0

    def step(self, deadline: float | None = None) -> bool:
        """Send one batch of the current segment (claiming one if needed); True if it did.

        Its request ends by ``deadline`` (a synchronous flush's).
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._housekeeping()
            if self._segment is None:
                if not self._open():
                    return False
            elif time.monotonic() < self._not_before:
                return False  # the server's Retry-After, in the middle of a segment
            return self._send_batch(deadline)
        except Exception as exc:
            self._stats.warn_once("replay", "banyan: spool replay failed: %r", exc)
            self._fail(str(exc))
            return False
        finally:
            self._lock.release()

    def _housekeeping(self) -> None:
        if self.prepare_wanted:
            self.prepare_wanted = False
            self.spool.prepare()
        self.spool.maybe_sync()

    def _open(self) -> bool:
        now = time.monotonic()
        if self._stop.is_set():
            return False
        if now < self._not_before and self._healthy() <= self._failed_at:
            return False
        gen = self._wanted
        if (
            now < self._rescan_at
            and gen == self._idle_gen
            and self.spool.spooled == self._seal_mark
        ):
            # Nothing new here and none asked: look for other processes' orphans once an interval.
            return False
        self._maybe_seal(now, gen)
        segment = self.spool.claim()
        if segment is None:
            self._rescan_at = now + self._seal_interval
            self._settle_flushes(idle=gen)
            return False
        self._segment, self._pending = segment, None
        taken, self._scratch = self._progress.setdefault(
            segment.name, (set(), self._stats.scratch())
        )
        self._taken = taken
        self._delivery = self._deliver()
        # What it cannot deliver comes back here (the records are in the spool already).
        self._delivery.spill = self._give_back
        self._records = ((i, r) for i, r in enumerate(segment.records()) if i not in taken)
        return True

    def _maybe_seal(self, now: float, gen: int) -> None:
        spooled = self.spool.spooled
        if spooled == self._seal_mark:
            self._sealed_gen = gen
            return
        if gen <= self._sealed_gen and now - self._sealed_at < self._seal_interval:
            return
        self.spool.seal()
        self._seal_mark, self._sealed_at, self._sealed_gen = spooled, now, gen
        if self._prepare:
            self.spool.prepare()

    def _send_batch(self, deadline: float | None) -> bool:
        places, batch = self._next_batch()
        if not batch:
            self._ack()
            return True
        assert self._delivery is not None
        self._left = []
        self._delivery.deliver(batch, deadline, self._stop, self._scratch)
        left = self._sort_out(places, batch)
        if left and len(left) < len(batch) and self._shedding():
            # The server took part of it: send the rest again after its Retry-After, without
            # reading the segment again nor counting a failure (a 1.0.1 server's 429s).
            self._records = itertools.chain(left, self._unpend(), self._records)
            self._not_before = self._delivery.not_before
            return True
        if self._left:
            refused = self._left_reason is DropReason.UNAUTHORIZED
            self._fail(self._scratch.last_error or "replay failed", hold=refused)
            return False
        if self._pending is None:
            # That was the last batch: delete the segment now, not at a next step that a
            # shutdown may never take (the next process would send it all again).
            self._ack()
        return True

    def _give_back(
        self, batch: list[Encoded], records: list[Encoded], reason: DropReason, error: str
    ) -> None:
        """The delivery's spill: ``records`` were not delivered; the segment keeps them."""
        self._left += records
        self._left_reason = reason
        self._scratch.error(error)

    def _sort_out(self, places: list[int], batch: list[Encoded]) -> list[tuple[int, bytes]] | None:
        """Remember which records of ``batch`` the server took (a later batch may fail and
        the segment be read again); the others, with their places. None when unsure."""
        left = {id(record) for record in self._left}
        if not left <= {id(record) for record in batch}:
            return None  # a repaired copy was left: not sure which went through
        pairs = list(zip(places, batch, strict=True))
        self._taken.update(place for place, record in pairs if id(record) not in left)
        return [(place, bytes(record)) for place, record in pairs if id(record) in left]

    def _shedding(self) -> bool:
        # Only "retries exhausted" (max_retries=0): not a refused key, a deadline, a stop.
        return self._left_reason is DropReason.RETRIES_EXHAUSTED and not self._stop.is_set()

    def _unpend(self) -> list[tuple[int, bytes]]:
        pending, self._pending = self._pending, None
        return [] if pending is None else [pending]

    def _next_batch(self) -> tuple[list[int], list[Encoded]]:
        max_records, max_bytes = self._batch
        places: list[int] = []
        batch: list[Encoded] = []
        size = 0
        if self._pending is not None:
            (place, record), self._pending = self._pending, None
            places.append(place)
            batch.append(record)
            size = len(record)
        for place, record in self._records:
            if batch and (len(batch) >= max_records or size + len(record) > max_bytes):
                self._pending = place, record
                break
            places.append(place)
            batch.append(record)
            size += len(record)
        return places, batch

    def _ack(self) -> None:
        segment = self._segment
        assert segment is not None
        if segment.damage.error is not None:
            tries = self._unreadable[segment.name] = self._unreadable.get(segment.name, 0) + 1
            if tries < UNREADABLE_TRIES:
                # Perhaps a passing I/O error: keep it and try again after the backoff.
                self._fail(f"spool: {segment.damage.error}")
                return
            # Still unreadable: it would block every later one (oldest first): let it go.
            # Its records count as lost at the ack (Segment.lost, the header's count).
            self._scratch.error(f"spool: {segment.damage.error}")
        self._segment = None
        self._progress.pop(segment.name, None)
        if self.spool.ack(segment):
            # Else the segment stays spooled and is counted when it is replayed again.
            self._stats.replayed(segment.good, self._scratch)
        self._failures = 0
        self._not_before = 0.0
        self.key_refused = False

    def _fail(self, error: str, hold: bool = False) -> None:
        """Put the segment back and back off; ``hold``: the key was refused, back off long."""
        segment, self._segment = self._segment, None
        if segment is not None:
            self.spool.put_back(segment)
        self._failures += 1
        base, cap = self._backoff
        delay = cap if hold else min(cap, MAX_BACKOFF, base * 2 ** (self._failures - 1))
        self.key_refused = hold
        self._failed_at = time.monotonic()
        self._not_before = self._failed_at + delay
        if self._delivery is not None:
            # The server's own Retry-After (at most max_retry_after), when it said one.
            self._not_before = max(self._not_before, self._delivery.not_before)
        self._stats.error(error)
        with self._cond:
            self._failed_gen = self._wanted
            self._cond.notify_all()

    def _settle_flushes(self, idle: int) -> None:
        with self._cond:
            self._idle_gen = max(self._idle_gen, min(idle, self._sealed_gen))
            self._cond.notify_all()

    def flush(self, deadline: float, wake: Callable[[], None] | None, wait: bool = True) -> bool:
        """Seal and replay what this process spooled before the call.

        True once nothing is left to claim, once an attempt failed, or once
        shutdown stopped the replay (the records stay spooled, for this process or
        the next); False at ``deadline``. ``wake`` rouses the
        flusher; without one the steps run on the calling thread. ``wait=False``
        (a buffered flush: what is spooled is settled) wakes the flusher and
        returns True at once, leaving a backoff in place.
        """
        with self._cond:
            self._wanted += 1
            gen = self._wanted
        if wait:
            # The caller waits for the replay: worth an attempt now, backoff or not.
            self._not_before = 0.0
        if wake is not None:
            wake()
        else:
            while time.monotonic() < deadline and self.step(deadline):
                pass
        return not wait or self._settled(gen, deadline, wake is not None)

    def _settled(self, gen: int, deadline: float, woken: bool) -> bool:
        with self._cond:
            while self._idle_gen < gen and self._failed_gen < gen:
                if self._stop.is_set():
                    # shutdown() hands what is spooled over to the next process: settled.
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not woken:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self) -> None:
        """Stop replaying: a batch in flight ends its send, later steps do nothing."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
