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
compute one and hand the remaining time down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from banyan._record import Encoded
from banyan._ring import Ring

#: Delivers a batch; True when all of it was delivered. Must not raise.
Export = Callable[[list[Encoded], "float | None", threading.Event], bool]
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
        self._batch = (batch_records, batch_bytes)
        self._interval = interval
        self._workers = workers
        self._background = background
        self._name = name
        self._event = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition(threading.Lock())
        self._side = side
        self._inflight: dict[int, list[Encoded]] = {}
        self._abandoned: list[list[Encoded]] = []
        self._threads: list[threading.Thread] = []
        #: Records handed to ``export`` and not yet settled.
        self.in_flight = 0
        #: Read on the hot path: whether there is nothing left to start.
        self.started = not background

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
            start, records = self.ring.take(*self._batch)
            if not records:
                return False
            self._inflight[start] = records
            self.in_flight += len(records)
        self._send(records, deadline, start)
        return True

    def send_now(self, records: list[Encoded], deadline: float | None) -> bool:
        """Export ``records`` on the caller's thread, bypassing the ring."""
        with self._cond:
            self.in_flight += len(records)
        return self._send(records, deadline, None)

    def _send(self, records: list[Encoded], deadline: float | None, start: int | None) -> bool:
        ok = False
        try:
            ok = self._export(records, deadline, self._stop)
        except BaseException as exc:
            self._on_error(records, exc)
        finally:
            with self._cond:
                # settle() or abandon() may have accounted for this batch already.
                if start is None or self._inflight.pop(start, None) is not None:
                    self.in_flight -= len(records)
                self._cond.notify_all()
        return ok

    def _abandoned_has(self, batch: list[Encoded]) -> bool:
        # Called with self._cond held.
        return any(b is batch for b in self._abandoned)

    def claim(self, batch: list[Encoded], account: Callable[[], object]) -> bool:
        """Run ``account`` (count what became of ``batch``) unless :meth:`abandon` gave the
        batch up meanwhile, which accounted for it already; whether it ran.

        ``export`` calls this before it returns: under the flusher's lock, so that
        a batch is counted once, by its export or by ``abandon``'s caller.
        """
        with self._cond:
            if self._abandoned_has(batch):
                return False
            account()
            return True

    def settle(
        self, batch: list[Encoded], records: list[Encoded], keep: Callable[[list[Encoded]], object]
    ) -> None:
        """Hand ``records`` of ``batch``, which could not be delivered, to ``keep``, and count
        the batch settled.

        Nothing happens when :meth:`abandon` took the batch already: it is
        kept once. ``keep`` runs under the flusher's lock so that ``flush``
        never sees the batch in neither place.
        """
        with self._cond:
            if self._abandoned_has(batch):
                return
            keep(records)
            for start, held in self._inflight.items():
                if held is batch:
                    del self._inflight[start]
                    self.in_flight -= len(batch)
                    break
            self._cond.notify_all()

    def abandon(self) -> list[Encoded]:
        """Give up on the batches still in flight (after :meth:`stop`) and return their records."""
        with self._cond:
            batches = list(self._inflight.values())
            self._abandoned.extend(batches)
            self._inflight.clear()
            self.in_flight -= sum(len(batch) for batch in batches)
            self._cond.notify_all()
        return [record for batch in batches for record in batch]

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

    def discard(self) -> list[Encoded]:
        """Empty the ring and return what it held (after :meth:`stop`)."""
        out: list[Encoded] = []
        while True:
            _, records = self.ring.take(*self._batch)
            if not records:
                return out
            out.extend(records)
