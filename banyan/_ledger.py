"""The ledger: where every record of one logger is, each move made once under one lock.

A record enters queued (in the ring), or straight into the spool (durable
mode, a full ring), or is dropped at the door (``entry_dropped``). From the ring it
goes in flight, in a batch (:meth:`Ledger.take`); a batch ends delivered,
dropped with a :class:`~banyan._stats.DropReason`, or spooled, and each of
those moves is one call here, counted once:

* :meth:`Ledger.settle` when its export returns (the outcome tallied apart
  in a scratch :class:`~banyan._stats.Stats`);
* :meth:`Ledger.spill` for the part delivery gave up on, spooled or dropped
  (once ``closing`` is set, held in flight for close() to give up instead);
* :meth:`Ledger.abandon` then :meth:`Ledger.give_up` at shutdown's deadline:
  a batch from the ring is the shutdown's from then on, its late export only
  noted in ``delivered_after_shutdown`` (a blocking ``log_prompt``'s is left
  to its caller);
* :meth:`Ledger.replayed` when a spooled segment is acknowledged.

:meth:`Ledger.view` reads every counter under the same lock, so that
``logs_queued == logs_sent + logs_dropped + queue_size + in_flight +
spooled_pending`` holds in every snapshot, not only at rest (issue 15).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from banyan._stats import DropReason, SpoolCounts, Stats

if TYPE_CHECKING:
    from banyan._record import Encoded
    from banyan._ring import Ring

#: Records refused, by reason (``Spool.add_many``).
Refused = dict[DropReason, int]
#: Counters of requests, not records: a tally adds them as they are.
_REQUEST_COUNTERS = ("duplicates", "retries", "batches_sent", "bytes_sent")


@dataclasses.dataclass(eq=False)
class Batch:
    """Records in flight together: ``left`` of them not yet counted elsewhere."""

    records: list[Encoded]
    left: int
    #: Shutdown took it: its export's outcome is only noted.
    abandoned: bool = False
    #: Delivery is spooling part of it: the rest is settled by its export, not abandoned.
    spilling: bool = False
    #: A blocking ``log_prompt``'s: its caller is told the outcome, shutdown leaves it alone.
    direct: bool = False
    #: Records delivery gave up on once close() began: close() spools (or drops) them.
    held: list[Encoded] = dataclasses.field(default_factory=list)


class Ledger(Stats):
    """One logger's record accounting, and the counters of :class:`Stats` beside it."""

    def __init__(self) -> None:
        super().__init__()
        #: Records ever taken out of the ring, and records in batches not yet settled.
        self.taken = 0
        self.in_flight = 0
        #: Records of acknowledged spool segments (this process's replay).
        self.replayed_records = 0
        self._batches: dict[int, Batch] = {}
        #: close() began: delivery no longer spills, it leaves the records to close().
        self.closing = False
        #: Notified when a batch settles (close() waits for spills under way).
        self._settled = threading.Condition(self._lock)
        #: Drops made on a thread already inside a move or a view, counted at its release.
        self._later: list[tuple[DropReason, int, str | None, bool]] = []

    def drop(
        self, reason: DropReason, count: int = 1, error: str | None = None, entry: bool = False
    ) -> None:
        """Count ``count`` records lost for ``reason`` (see :meth:`Stats.drop`)."""
        if self._lock._is_owned():  # type: ignore[attr-defined]
            # A signal handler's log_prompt interrupted this thread in a move or a view:
            # counted once the lock is released, so that no view sees half of it.
            self._later.append((reason, count, error, entry))
            return
        with self._held():
            super().drop(reason, count, error, entry)

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """The ledger's lock, and then the drops deferred while it was held."""
        with self._lock:
            yield
        while self._later and not self._lock._is_owned():  # type: ignore[attr-defined]
            try:
                later = self._later.pop(0)
            except IndexError:  # a signal handler's drop took it meanwhile
                return
            super().drop(*later)

    def take(self, ring: Ring, max_records: int, max_bytes: int) -> tuple[int, list[Encoded]]:
        """Queued -> in flight: the ring's oldest records as one batch (see ``Ring.take``)."""
        with self._held():
            start, records = ring.take(max_records, max_bytes)
            if records:
                self.taken += len(records)
                self._open(records)
        return start, records

    def sent_directly(self, records: list[Encoded]) -> None:
        """Entered and in flight at once: a blocking ``log_prompt``."""
        with self._held():
            self.direct += len(records)
            self._open(records).direct = True

    def _open(self, records: list[Encoded]) -> Batch:
        self.in_flight += len(records)
        batch = self._batches[id(records)] = Batch(records, len(records))
        return batch

    def settle(self, records: list[Encoded], tally: Stats) -> bool:
        """In flight -> delivered or dropped, as ``tally`` counted the export of ``records``;
        False when shutdown gave the batch up meanwhile (then only noted)."""
        with self._held():
            self._settled.notify_all()
            batch = self._batches.pop(id(records), None)
            if batch is None or batch.abandoned:
                self.delivered_after_shutdown += tally.sent
                return False
            count = batch.left - len(batch.held)
            self.in_flight -= count
            short = self._count(count, tally)
            if batch.held:
                # What delivery left to close(): in flight still, in a batch of its own.
                batch.records, batch.left = batch.held, len(batch.held)
                self._batches[id(batch.records)] = batch
        self._warn_short(short)
        return True

    def _count(self, records: int, tally: Stats) -> int:
        # Called with the lock held: `records` leave their state as `tally` counted them; what
        # it did not count is an internal error (an export that raised). Returns that number.
        drops = {reason: n for reason, n in tally.dropped.items() if n}
        sent = min(tally.sent, records - sum(drops.values()))
        for reason, count in drops.items():
            self.dropped[reason] += count
        self.sent += max(0, sent)
        short = records - max(0, sent) - sum(drops.values())
        self.dropped[DropReason.INTERNAL_ERROR] += max(0, short)
        for name in _REQUEST_COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(tally, name))
        self.legacy_concurrency = tally.legacy_concurrency or self.legacy_concurrency
        self.http_version = tally.http_version or self.http_version
        self.last_error = tally.last_error or self.last_error
        return short

    def _warn_short(self, short: int) -> None:
        if short > 0:
            self.warn_once(
                "export", "banyan: internal error while sending logs: %d record(s) lost", short
            )

    def spilling(self, records: list[Encoded], part: list[Encoded]) -> bool:
        """Whether delivery may spool ``part`` of ``records`` (False: shutdown took the batch,
        or close() began and will spool ``part`` itself)."""
        with self._held():
            batch = self._batches.get(id(records))
            if batch is None or batch.abandoned:
                return False
            if self.closing and not batch.direct:
                batch.held += part
                return False
            batch.spilling = True
            return True

    def spill(self, records: list[Encoded], count: int, refused: Refused, error: str) -> None:
        """In flight -> dropped (``refused``, by reason) or spooled: ``count`` of ``records``."""
        with self._held():
            batch = self._batches[id(records)]
            batch.left -= count
            self._leave(count, refused)
        self._lost(refused, error)

    def _leave(self, count: int, refused: Refused) -> None:
        # Called with the lock held.
        self.in_flight -= count
        self.spooled_from_queue += count - sum(refused.values())
        for reason, n in refused.items():
            self.dropped[reason] += n

    def abandon(self, timeout: float = 0.0) -> list[Batch]:
        """Shutdown's deadline (after :attr:`closing` is set): wait up to ``timeout`` for the
        spills under way, then every other batch from the ring is the caller's (see give_up)."""
        deadline = time.monotonic() + timeout
        with self._held():
            while self.spills() and self._settled.wait(max(0.0, deadline - time.monotonic())):
                pass
            batches = [b for b in self._batches.values()
                       if not (b.spilling or b.direct or b.abandoned)]  # fmt: skip
            for batch in batches:
                batch.abandoned = True
        return batches

    def spills(self) -> bool:
        """Whether delivery is spooling part of a batch from the ring (settled by its export)."""
        return any(b.spilling and not b.direct for b in self._batches.values())

    def give_up(self, batches: list[Batch], refused: Refused | DropReason, error: str) -> int:
        """In flight -> spooled or dropped: the records of ``batches`` from :meth:`abandon`,
        ``refused`` by the spool (by reason; a reason alone: all lost for it), the others
        spooled; returns how many were lost."""
        count = sum(batch.left for batch in batches)
        if isinstance(refused, DropReason):
            refused = {refused: count}
        with self._held():
            for batch in batches:
                self._batches.pop(id(batch.records), None)
            self._leave(count, refused)
        return self._lost(refused, error)

    def _lost(self, refused: Refused, error: str) -> int:
        for reason, lost in refused.items():
            if lost:
                self.error(error)
                self.warn_undelivered(lost, reason, error)
        return sum(refused.values())

    def replayed(self, records: int, tally: Stats) -> None:
        """Spooled -> delivered or dropped: an acknowledged segment of ``records`` records."""
        with self._held():
            self.replayed_records += records
            short = self._count(records, tally)
        self._warn_short(short)

    def view(self, ring: Ring | None = None, spool: SpoolCounts | None = None) -> dict[str, Any]:
        """The ``get_stats()`` dictionary: every record counted once, in one consistent read."""
        spool = spool or SpoolCounts()
        with self._held():
            queued = 0 if ring is None else len(ring)
            dropped = {reason.value: n for reason, n in self.dropped.items()}
            dropped[DropReason.SPOOL_EVICTED.value] += spool.evicted
            dropped[DropReason.SPOOL_CORRUPT.value] += spool.lost
            # Records that went straight to the spool: durable mode, or a full ring.
            at_entry = spool.spooled - self.spooled_from_queue
            unspooled = self.replayed_records + spool.evicted + spool.lost
            return self.counters() | {
                "logs_queued": self.taken + queued + self.direct + self.entry_dropped + at_entry,
                "logs_sent": self.sent,
                "logs_dropped": sum(dropped.values()),
                "dropped": dropped,
                "queue_size": queued,
                "queue_bytes": 0 if ring is None else ring.bytes,
                "in_flight": self.in_flight,
                "spooled": spool.spooled,
                "replayed": self.replayed_records,
                "spooled_pending": spool.spooled - unspooled,
                "spool_evicted": spool.evicted,
                "spool_corrupt_frames": spool.corrupt_frames,
                "spool_lost": spool.lost,
                "spool_segments": spool.segments,
                "spool_bytes": spool.bytes,
            }
