"""The generic batching core: ring in, batches out (OpenTelemetry's BatchProcessor shape).

It knows nothing of HTTP or records: it takes byte strings from its
:class:`~banyan._ring.Ring`, groups them into batches under both a record
and a byte limit, and hands each batch to ``export``. In background mode one
named daemon thread, started lazily, does this; when a backlog builds up more
workers join, up to ``workers``, so that many batches can be in flight while
the server is slow. In sync mode the same code runs on the caller's thread.
``side`` is extra work taken in turn with the ring's batches (spool replay):
one side step per live batch, so neither starves the other.

Every wait has a deadline: :meth:`Flusher.flush` and :meth:`Flusher.stop`
compute one and hand the remaining time down. What becomes of each record is
the :class:`~banyan._ledger.Ledger`'s to count: the flusher takes batches
through it and settles each export there, once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from banyan._ledger import Batch, Ledger
from banyan._record import Encoded
from banyan._ring import Ring
from banyan._stats import Stats

#: Delivers a batch by a deadline, counting what became of it into the tally (a Stats);
#: True when all of it was delivered.
Export = Callable[[list[Encoded], "float | None", threading.Event, Stats], bool]
#: Told of an export that raised (its records; none for a worker's own error). The
#: ledger counts the records.
OnError = Callable[[list[Encoded], BaseException], None]
#: One step of extra work, done by a deadline (or None); True when it did some.
Side = Callable[["float | None"], bool]


class Flusher:
    """Moves records from the ring to ``export`` in batches."""

    def __init__(
        self,
        export: Export,
        on_error: OnError,
        *,
        ledger: Ledger | None = None,
        max_queue_bytes: int,
        wake_records: int,
        wake_bytes: int,
        batch_records: int,
        batch_bytes: int,
        interval: float | None,
        workers: int,
        background: bool,
        side: Side | None = None,
        name: str = "banyan-flusher",
        fast_path: bool = True,
    ) -> None:
        self.ring = Ring(max_queue_bytes, wake_records, wake_bytes, self._signal, fast=fast_path)
        self._export = export
        self._on_error = on_error
        self._ledger = Ledger() if ledger is None else ledger
        self._batch = (batch_records, batch_bytes)
        self._interval = interval
        self._workers = workers
        self._background = background
        self._name = name
        self._event = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition(threading.Lock())
        self._side = side
        #: Ring positions of the batches in flight, for flush().
        self._inflight: set[int] = set()
        self._threads: list[threading.Thread] = []
        #: Read on the hot path: whether there is nothing left to start.
        self.started = not background

    @property
    def in_flight(self) -> int:
        """Records handed to ``export`` and not yet settled (the ledger's count)."""
        return self._ledger.in_flight

    def start(self) -> None:
        """Start the first worker (idempotent, cheap after the first call)."""
        with self._cond:
            if self.started or self._stop.is_set():
                return
            self._spawn()
            self.started = True

    def _spawn(self) -> None:
        # Called with self._cond held.
        index = len(self._threads)
        name = self._name if index == 0 else f"{self._name}-{index}"
        thread = threading.Thread(target=self._run, name=name, daemon=True)
        thread.start()  # may raise (no thread left): then nothing here changed
        self._threads.append(thread)

    def wake(self) -> None:
        """Have a worker look for work now rather than at the next interval."""
        if self._background:
            self._event.set()

    def _signal(self) -> None:
        # The ring crossed a wake threshold.
        if self._background:
            self._event.set()
        else:
            while self.ring.backlog() and self.drain_one(None):
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            self._event.clear()
            try:
                while not self._stop.is_set() and self._work(None):
                    self._grow()
            except Exception as exc:
                # A bug of ours must not end the thread that delivers everything else:
                # report it (warned once) and carry on after the interval.
                self._on_error([], exc)
            self._event.wait(self._interval)

    def _work(self, deadline: float | None) -> bool:
        live = self.drain_one(deadline)
        side = self._side is not None and not self._stop.is_set() and self._side(deadline)
        return live or side

    def _grow(self) -> None:
        if len(self._threads) < self._workers and self.ring.backlog():
            with self._cond:
                if len(self._threads) < self._workers and not self._stop.is_set():
                    self._spawn()

    def drain_one(self, deadline: float | None) -> bool:
        """Export one batch from the ring; False when the ring was empty."""
        with self._cond:
            start, records = self._ledger.take(self.ring, *self._batch)
            if not records:
                return False
            self._inflight.add(start)
        self._send(records, deadline, start)
        return True

    def send_now(self, records: list[Encoded], deadline: float | None) -> bool:
        """Export ``records`` on the caller's thread, bypassing the ring."""
        self._ledger.sent_directly(records)
        return self._send(records, deadline, None)

    def _send(self, records: list[Encoded], deadline: float | None, start: int | None) -> bool:
        ok = False
        tally = self._ledger.scratch()
        try:
            ok = self._export(records, deadline, self._stop, tally)
        except BaseException as exc:
            self._on_error(records, exc)
        finally:
            self._ledger.settle(records, tally)
            with self._cond:
                if start is not None:
                    self._inflight.discard(start)
                self._cond.notify_all()
        return ok

    def abandon(self, timeout: float = 0.0) -> list[Batch]:
        """Give up on the batches still in flight (after :meth:`stop`): the caller's now,
        once the spills under way have settled (waiting at most ``timeout``)."""
        with self._cond:
            self._inflight.clear()
            self._cond.notify_all()
        return self._ledger.abandon(timeout)

    def _done(self, target: int) -> bool:
        # Called with self._cond held: every record before position `target` settled.
        if self.ring.popped < target:
            return False
        return all(start >= target for start in self._inflight)

    def flush(self, timeout: float) -> bool:
        """Wait until everything pushed before this call is settled, or ``timeout``."""
        deadline = time.monotonic() + timeout
        target = self.ring.pushed()
        if self._background:
            self.start()
            self._event.set()
        else:
            while time.monotonic() < deadline and self._work(deadline):
                pass
        with self._cond:
            while not self._done(target):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self, timeout: float) -> bool:
        """Stop the workers, waiting at most ``timeout``; True when all ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stop.set()
            threads = list(self._threads)
        self._event.set()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def discard(self) -> None:
        """Move what the ring holds in flight (after :meth:`stop`), for :meth:`abandon`."""
        while self._ledger.take(self.ring, *self._batch)[1]:
            pass
