"""Replay: spooled segments back to the server, between live batches.

One segment at a time per process, oldest first: :meth:`Spool.claim` hands
out this process's sealed segments and those of dead processes, each to
exactly one process. A step sends one batch, and the flusher alternates
steps with live batches, so neither starves the other. A segment is
acknowledged (deleted) once each of its records was accepted, found a
duplicate, or rejected for good; after a failure this process keeps it
locked (so no purge or other process takes it) and tries again
after a backoff that a live success ends early. A segment's counters join
the logger's only at its ack, so a segment retried after a half-done replay
is counted once (the server deduplicates the resent records by id).

:meth:`Spool.claim` never returns the active segment, so a step first seals
it when records were appended since the last seal and ``seal_interval`` has
passed or a flush asked. In durable mode that is every record's way out; in
buffered mode, the way out of whatever overflowed or failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from banyan._record import Encoded
from banyan._stats import DropReason, Stats

if TYPE_CHECKING:
    from banyan._delivery import Delivery
    from banyan._segment import Segment
    from banyan._spool import Spool

#: A replayed batch counted under one of these failed: keep the segment, back off.
_FAILURES = (DropReason.RETRIES_EXHAUSTED, DropReason.DEADLINE, DropReason.SHUTDOWN,
             DropReason.UNAUTHORIZED, DropReason.INTERNAL_ERROR)  # fmt: skip
#: Reads of a segment that fail (OSError) before it is given up as unreadable.
UNREADABLE_TRIES = 3
#: Durable mode has no live traffic to tell that the server is back: probe at least this often.
MAX_BACKOFF = 10.0


class Replayer:
    """Claims, sends and acknowledges spooled segments for one logger.

    ``deliver`` builds a Delivery counting into the Stats it is given (one
    per segment); ``healthy`` returns when the live path last got a 2xx.
    """

    def __init__(
        self,
        spool: Spool,
        deliver: Callable[[Stats], Delivery],
        stats: Stats,
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
        self._records: Iterator[bytes] = iter(())
        self._pending: bytes | None = None
        self._scratch = stats.scratch()
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
            if self._segment is None and not self._open():
                return False
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
        self._scratch = self._stats.scratch()
        self._delivery = self._deliver(self._scratch)
        self._records = segment.records()
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
        batch = self._next_batch()
        if not batch:
            self._ack()
            return True
        assert self._delivery is not None
        self._delivery(batch, deadline, self._stop)
        failed = [self._scratch.dropped[reason] for reason in _FAILURES]
        if any(failed):
            refused = self._scratch.dropped[DropReason.UNAUTHORIZED] > 0
            self._fail(self._scratch.last_error or "replay failed", hold=refused)
            return False
        if self._pending is None:
            # That was the last batch: delete the segment now, not at a next step that a
            # shutdown may never take (the next process would send it all again).
            self._ack()
        return True

    def _next_batch(self) -> list[Encoded]:
        max_records, max_bytes = self._batch
        batch: list[Encoded] = []
        size = 0
        if self._pending is not None:
            batch.append(self._pending)
            size, self._pending = len(self._pending), None
        for record in self._records:
            if batch and (len(batch) >= max_records or size + len(record) > max_bytes):
                self._pending = record
                break
            batch.append(record)
            size += len(record)
        return batch

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
        if self.spool.ack(segment):
            # Else the segment stays spooled and is counted when it is replayed again.
            self._stats.merge(self._scratch)
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
