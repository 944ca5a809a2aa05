"""One process's way out for a logger's records: ring, flusher, delivery, spooling, life cycle.

:class:`~banyan._client.PromptStackLogger` builds records and hands each to
the pipeline: on credit straight into the ring (``ring.try_append``), else
through :meth:`Pipeline.push`. Everything after that is here, and every
record's state is the :class:`~banyan._ledger.Ledger`'s:

* ``flush(deadline)``: drain the ring, wake (durable: wait for) the spool's
  replay, and report whether anything was lost since the last flush;
* ``close(deadline)``: flush, refuse new records, stop the replay and the
  workers, give what is still queued or in flight to the spool (or drop it,
  counted) and close the spool for the next process;
* a forked child builds a new pipeline (``PromptStackLogger`` does, on its
  fork hook or its pid check); one shut before the fork stays shut.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from banyan._delivery import Delivery
from banyan._flusher import Flusher
from banyan._ledger import Ledger
from banyan._spooldir import names as spool_names
from banyan._spooling import Spooling
from banyan._stats import DropReason

if TYPE_CHECKING:
    from banyan._config import Config
    from banyan._ledger import Batch
    from banyan._record import Encoded
    from banyan._spool import Spool
    from banyan._transport import Transport

_AT_SHUTDOWN = "still queued at shutdown"
#: Drops the user asked for: they do not make flush() report a loss.
_CHOSEN = (DropReason.DISABLED, DropReason.SAMPLED, DropReason.BEFORE_SEND)


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (monotonic), never below 0."""
    return max(0.0, deadline - time.monotonic())


class Pipeline:
    """The ring, its flusher, delivery and spooling of one logger in one process."""

    def __init__(
        self, config: Config, transport: Transport, spool: Spool | None, *, fresh: bool
    ) -> None:
        self._config = config
        self._durable = config.durability == "durable"
        self.ledger = Ledger()
        self.delivery = Delivery(config, transport)
        self.spooling = None if spool is None else Spooling(
            spool, config, transport, self.ledger, self.delivery
        )  # fmt: skip
        self.flusher = self._flusher()
        self.ring = self.flusher.ring
        self._spool_add: Callable[[Encoded], DropReason | None] | None = None
        if self.spooling is not None:
            self.spooling.bind(self.flusher)
            if self._durable:
                self._spool_add = self.spooling.spool.add
        #: Read on the slow path: the flusher has not started yet.
        self.idle = not self.flusher.started
        self.closed = False
        #: Set once close() has spooled what it took out of the queue, in thread _closer.
        self._down = threading.Event()
        self._closer: int | None = None
        self._flush_mark = 0
        if fresh and self.idle and spool is not None and spool_names(spool.directory):
            # A backlog from earlier processes: replay it even if this one never logs.
            self.start()

    def _flusher(self) -> Flusher:
        config, spooling = self._config, self.spooling
        return Flusher(
            self.delivery.deliver,
            self._export_failed,
            ledger=self.ledger,
            max_queue_bytes=config.max_queue_bytes,
            wake_records=config.batch_size,
            wake_bytes=config.wake_bytes,
            batch_records=config.batch_max_records,
            batch_bytes=config.batch_max_bytes,
            interval=config.flush_interval if config.auto_flush else None,
            workers=config.max_in_flight,
            # Off (enabled=False): nothing to send, no thread to send it.
            background=config.background_thread and config.enabled,
            side=spooling.replayer.step if spooling is not None else None,
            fast_path=not self._durable,
        )

    def push(self, data: Encoded) -> bool:
        """Queue ``data`` without credit (the first record, durable mode, a full ring, after
        close, a forked child): into the spool first in durable mode, else the ring."""
        refusal = None
        if self._spool_add is not None:
            refusal = self._spool_add(data)
            kept = refusal is None
        else:
            kept = self.ring.push(data)
        if kept:
            if self.idle:
                self.start()
            return True
        return self._refused(data, refusal)

    def _refused(self, data: Encoded, refusal: DropReason | None) -> bool:
        ledger, spooling = self.ledger, self.spooling
        if self.closed:
            return ledger.drop_entry(DropReason.CLOSED, "log_prompt called after shutdown()")
        if spooling is not None and refusal is not None:
            return spooling.refused(data, refusal) and self._started()
        if spooling is not None:
            return spooling.overflow(data)
        if len(data) > self.ring.max_bytes:
            return ledger.drop_entry(DropReason.TOO_LARGE, f"a {len(data)} byte record")
        ledger.drop(DropReason.QUEUE_FULL, entry=True)
        ledger.warn_once(
            "queue-full",
            "banyan: the log queue is full (%d bytes); records are being dropped "
            "and counted in get_stats()['dropped']['queue_full']",
            self.ring.max_bytes,
        )
        return False

    def _started(self) -> bool:
        if self.idle:
            self.start()
        return True

    def start(self) -> None:
        """Start the flusher. Never raises: a record already in the ring waits there, counted
        as queued, when the thread cannot start (a process at its thread limit)."""
        try:
            self.flusher.start()
        except Exception as exc:
            self.ledger.warn_once(
                "flusher-start", "banyan: cannot start the sending thread, records wait: %s", exc
            )
            return
        self.idle = False

    def send_now(self, data: Encoded) -> bool:
        """Deliver ``data`` on the caller's thread (``blocking=True``)."""
        if self.closed:
            return self.ledger.drop_entry(DropReason.CLOSED, "log_prompt called after shutdown()")
        config = self._config
        deadline = time.monotonic() + config.timeout * (config.max_retries + 1)
        return self.flusher.send_now([data], deadline)

    def _export_failed(self, records: list[Encoded], exc: BaseException) -> None:
        # The ledger counts the batch's records the export did not account for.
        self.ledger.error(repr(exc))
        self.ledger.warn_once("export", "banyan: internal error while sending logs: %r", exc)

    def flush(self, deadline: float) -> bool:
        """Everything pushed so far delivered or spooled by ``deadline``, nothing lost since
        the last flush (durable mode: the spool replayed too); see ``PromptStackLogger.flush``."""
        done = self._flush(deadline, wait=self._durable)
        if self._closing_elsewhere():
            # What close() takes out of the queue is settled once it is in the spool.
            done = self._down.wait(remaining(deadline)) and done
        return done

    def _flush(self, deadline: float, wait: bool = True) -> bool:
        done = self.flusher.flush(remaining(deadline))
        spooling = self.spooling
        # The spool too, a backlog adopted from earlier processes included. After close
        # it is closed: what it holds waits for another process.
        if spooling is not None and not self._down.is_set():
            wake = self.flusher.wake if self._config.background_thread else None
            replayed = spooling.replayer.flush(deadline, wake, wait)
            # Durable: the spool is the queue, its replay is the flush. Buffered: what is
            # spooled is settled already; flush() wakes the replay and does not wait for it
            # (a slow server would hold every flush_after_task), close() gives it the time left.
            # A refused key holds the spool for a process with the right one: not done (#14).
            held = spooling.replayer.key_refused
            done = (replayed or not self._durable) and done and not held
        lost = self._lost_total()
        clean, self._flush_mark = lost == self._flush_mark, lost
        return done and clean

    def _lost_total(self) -> int:
        dropped = self.ledger.dropped
        lost = sum(dropped.values()) - sum(dropped[r] for r in _CHOSEN)
        if self.spooling is not None:
            lost += self.spooling.lost()
        return lost

    def wait_closed(self, timeout: float) -> bool:
        """close() was called: wait for it unless it is this thread's (a signal handler that
        interrupted it must not wait for itself)."""
        return not self._closing_elsewhere() or self._down.wait(timeout)

    def _closing_elsewhere(self) -> bool:
        return self.closed and self._closer != threading.get_ident()

    def close(self, deadline: float) -> bool:
        """Flush, stop, spool (or drop) the rest and close the spool; whether nothing was lost."""
        self._closer = threading.get_ident()
        self.closed = True
        try:
            mark = self._flush_mark
            delivered = self._flush(deadline)
            self.ring.close()
            if self.spooling is not None:
                self.spooling.replayer.stop()
            # From here delivery leaves what it gives up on to this sequence, which spools it
            # before the spool closes; spills already under way are waited for.
            self.ledger.closing = True
            self.flusher.stop(remaining(deadline))
            self.flusher.discard()
            return self._give_up(self.flusher.abandon(remaining(deadline)), delivered, mark)
        finally:
            self._down.set()

    def _give_up(self, left: list[Batch], delivered: bool, mark: int) -> bool:
        spooling = self.spooling
        if spooling is None:
            lost = self.ledger.give_up(left, DropReason.SHUTDOWN, _AT_SHUTDOWN)
            return delivered and not lost
        if left:
            spooling.give_up(left, DropReason.SHUTDOWN, _AT_SHUTDOWN)
        # A spill still under way past the deadline may meet a closed spool: not settled.
        late = self.ledger.spills()
        spooling.hand_over()
        return self._lost_total() == mark and not late

    def close_in_child(self) -> None:
        """A forked child of a closed logger: refuse records (counted), wait for no close."""
        self.ring.close()
        self.closed = True
        self._down.set()

    def stats(self) -> dict[str, Any]:
        """The record counters of ``get_stats()``, from the ledger, ring and spool."""
        spooling = self.spooling
        stats = self.ledger.view(self.ring, spooling.counts() if spooling is not None else None)
        stats["spool_handed_over"] = spooling.spool.handed_over if spooling is not None else 0
        return stats
