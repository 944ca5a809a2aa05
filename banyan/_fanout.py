"""Concurrent single-record delivery to a server that speaks only the 1.0.1 protocol (#20).

A 1.0.1 server takes one ``POST /api/logs/prompt-usage`` per record. The
flusher thread runs one asyncio loop of its own (no thread per request) that
keeps up to :attr:`Limiter.limit` requests in flight over a pool of HTTP/1.1
keep-alive connections (``_h1pool``). The limit adapts like TCP's congestion
window: it starts at 8, doubles per round of fast successes until the first
sign of overload, then grows by one per round; a 429, a 503, a timeout or a
refused connection halves it (once per round), and a Retry-After holds every
request of the client until it has passed. ``legacy_max_concurrency`` caps
the limit and ``legacy_max_rate`` the records per second.

What is retried: a request that provably was not processed (the connection
could not be made; 408, 425, 429, 503) is retried without doubt. One whose
outcome is unknown (a timeout or a reset after sending; 500, 502, 504) is
retried too, at-least-once, and counted in ``possible_duplicates`` (an extra copy
the server may hold);
every request carries the record's id as ``Idempotency-Key`` so that a server
can drop the second copy. Records still in flight when the batch is given up
(stop, deadline) are returned to the caller, counted as possible duplicates,
to be spooled once. Order is not kept.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from banyan._exceptions import (
    AuthenticationError,
    BanyanError,
    ConnectError,
    HTTPStatusError,
    RequestTimeout,
)
from banyan._failures import RETRY_STATUSES, held, note_error, refused
from banyan._h1pool import Answer, H1Pool
from banyan._legacybody import Job
from banyan._record import Encoded
from banyan._stats import DropReason, Stats
from banyan._wire import IDEMPOTENCY_HEADER, JSON, SINGLE_LOG_PATH

if TYPE_CHECKING:
    import ssl

    from banyan._config import Config

INITIAL_LIMIT = 8
#: How often a running batch looks at its stop event and deadline.
_POLL = 0.05
_NOT_PROCESSED = frozenset({408, 425, 429, 503})
_OVERLOAD = frozenset({429, 503})
#: Retried statuses after which the server may have stored the record (a gateway's answer).
_DOUBTFUL = frozenset({500, 502, 504})


class Limiter:
    """The adaptive concurrency limit (AIMD) and the optional records-per-second cap."""

    def __init__(self, ceiling: int, rate: float | None, clock: Callable[[], float]) -> None:
        self.ceiling = ceiling
        self.limit = min(INITIAL_LIMIT, ceiling)
        self._clock = clock
        self._slow_start = True
        self._round = 0
        self._cut_at = -1.0
        self._best = float("inf")
        self._interval = 1.0 / rate if rate else 0.0
        self._next_slot = 0.0

    def success(self, started: float, latency: float) -> None:
        """An answer came back: grow by a round of answers that were not slow."""
        self._best = min(self._best, latency)
        # Answers twice as slow as the best seen: the server is queueing; hold.
        if latency > 2 * self._best + 0.01:
            return
        self._round += 1
        if self._round >= self.limit:
            self._round = 0
            self.limit = min(self.ceiling, self.limit * 2 if self._slow_start else self.limit + 1)

    def overload(self, started: float) -> None:
        """A sign of overload: halve, once for all the requests started before the last cut."""
        if started < self._cut_at:
            return
        self._cut_at = self._clock()
        self._slow_start = False
        self._round = 0
        self.limit = max(1, self.limit // 2)

    def wait(self, now: float) -> float:
        """Seconds until the rate cap lets another request start (0: now, and it is taken)."""
        if not self._interval:
            return 0.0
        if now < self._next_slot:
            return self._next_slot - now
        self._next_slot = max(self._next_slot, now) + self._interval
        return 0.0


def in_doubt(error: BanyanError) -> bool:
    """Whether a request that failed with ``error`` (and is retried) may have been processed."""
    if isinstance(error, HTTPStatusError):
        return error.status_code in _DOUBTFUL
    return not isinstance(error, ConnectError)


@dataclass
class Policy:
    """How the calling delivery retries: its settings (``max_retries``, ``timeout``,
    ``max_retry_after``; replay's differ from the live ones) and its backoff; and whether
    records refused with 401/403 are kept (spooled) rather than dropped."""

    config: Config
    backoff: Callable[[int], float]
    keep_refused: bool = False


@dataclass
class Outcome:
    """What became of a batch: records left undelivered, and why."""

    ok: bool = True
    left: list[Encoded] = field(default_factory=list)
    reason: DropReason = DropReason.RETRIES_EXHAUSTED
    error: str = ""


class Fanout:
    """One logger's concurrent 1.0.1 sender: its loop, pool and limiter, shared by its threads."""

    def __init__(self, config: Config, tls: ssl.SSLContext, headers: dict[str, str]) -> None:
        self.config = config
        self.limiter = Limiter(
            config.legacy_max_concurrency, config.legacy_max_rate, time.monotonic
        )
        #: ``time.monotonic()`` before which no request starts (Retry-After).
        self.not_before = 0.0
        self.last_ok = 0.0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = H1Pool(config.base_url, SINGLE_LOG_PATH, {**headers, "Content-Type": JSON},
                            IDEMPOTENCY_HEADER, tls)  # fmt: skip

    def send(
        self,
        jobs: list[Job],
        deadline: float | None,
        stop: threading.Event,
        stats: Stats,
        policy: Policy,
    ) -> Outcome:
        """Send every job, counting into ``stats``; one batch at a time per logger."""
        while not self._lock.acquire(timeout=_POLL):
            if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                return Outcome(False, [job.record for job in jobs], DropReason.DEADLINE, "busy")
        try:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            run = _Run(self, jobs, deadline=deadline, stop=stop, stats=stats, policy=policy)
            return self._loop.run_until_complete(run.run())
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the pool and the loop; left to the collector while a stopped batch still runs."""
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            self._pool.close()
            loop, self._loop = self._loop, None
        finally:
            self._lock.release()
        if loop is None:
            return
        if asyncio._get_running_loop() is None:
            _last_turn(loop)
            return
        # shutdown() from async code: this thread cannot run a second loop (review item 7).
        turn = threading.Thread(target=_last_turn, args=(loop,), name="banyan-close", daemon=True)
        turn.start()
        turn.join(timeout=5.0)

    def start(self, job: Job, timeout: float) -> asyncio.Future[Answer]:
        """One request for ``job``, answered into the future."""
        return self._pool.send(job.body, job.key, timeout, min(timeout, 5.0))


def _last_turn(loop: asyncio.AbstractEventLoop) -> None:
    """One turn lets the aborted transports release their sockets; then the loop closes."""
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


class _Run:
    """One batch on the loop: launch within the limits, settle answers, retry, give up."""

    def __init__(
        self,
        fanout: Fanout,
        jobs: list[Job],
        *,
        deadline: float | None,
        stop: threading.Event,
        stats: Stats,
        policy: Policy,
    ) -> None:
        self.fanout, self.limiter, self.policy = fanout, fanout.limiter, policy
        self.queue: deque[Job] = deque(jobs)
        self.later: list[tuple[float, Job]] = []
        self.pending: dict[asyncio.Future[Answer], tuple[Job, float]] = {}
        self.done: deque[tuple[asyncio.Future[Answer], Job, float]] = deque()
        self.wake = asyncio.Event()
        self.deadline, self.stop, self.stats = deadline, stop, stats
        self.outcome = Outcome()
        self.giving_up = False
        #: Successes not yet counted into ``stats`` (counted once per turn, not per answer).
        self.sent = self.sent_bytes = 0

    async def run(self) -> Outcome:
        while self.pending or (not self.giving_up and (self.queue or self.later)):
            now = time.monotonic()
            if self.stop.is_set():
                await self._abandon(DropReason.SHUTDOWN, "shut down while sending one by one")
                break
            if self.deadline is not None and now >= self.deadline:
                await self._abandon(DropReason.DEADLINE, "the flush deadline passed")
                break
            await self._next(min(_POLL, self._launch(now)) or _POLL)
            while self.done:
                answer, job, started = self.done.popleft()
                del self.pending[answer]
                self._settle(job, started, answer.exception() or answer.result())
            self._count()
        self._count()
        out = self.outcome
        out.left += [job.record for job in self.queue] + [job.record for _, job in self.later]
        out.ok = out.ok and not out.left
        return out

    def _launch(self, now: float) -> float:
        """Start what the limits allow; seconds until something else could start."""
        if self.later and min(at for at, _ in self.later) <= now:
            ready = [job for at, job in self.later if at <= now]
            self.later = [(at, job) for at, job in self.later if at > now]
            self.queue.extendleft(reversed(ready))
        while self.queue and not self.giving_up and len(self.pending) < self.limiter.limit:
            if now < self.fanout.not_before:
                return self.fanout.not_before - now
            wait = self.limiter.wait(now)
            if wait:
                return wait
            job = self.queue.popleft()
            answer = self.fanout.start(job, self._timeout(now))
            answer.add_done_callback(partial(self._finished, job, now))
            self.pending[answer] = job, now
        if self.later:
            return max(0.0, min(at for at, _ in self.later) - now)
        return _POLL

    def _finished(self, job: Job, started: float, answer: asyncio.Future[Answer]) -> None:
        if not answer.cancelled():
            self.done.append((answer, job, started))
            self.wake.set()

    async def _next(self, wait: float) -> None:
        """Until a request ends or ``wait`` seconds pass (one timer, not a wait on every task)."""
        if not self.done:
            timer = asyncio.get_running_loop().call_later(wait, self.wake.set)
            await self.wake.wait()
            timer.cancel()
        self.wake.clear()

    def _timeout(self, started: float) -> float:
        timeout = self.policy.config.timeout
        if self.deadline is not None:
            timeout = max(0.001, min(timeout, self.deadline - started))
        return timeout

    def _settle(self, job: Job, started: float, result: Any) -> None:
        if isinstance(result, Answer) and result.status < 300:
            now = time.monotonic()
            self.limiter.success(started, now - started)
            self.fanout.last_ok = now
            self.sent += 1
            self.sent_bytes += len(job.body)
            return
        if isinstance(result, Answer):
            result = _status_error(result)
        self._failed(job, started, result)

    def _count(self) -> None:
        if self.sent:
            self.stats.http_version = "HTTP/1.1"
            self.stats.add(sent=self.sent, bytes_sent=self.sent_bytes)
            self.sent = self.sent_bytes = 0

    def _failed(self, job: Job, started: float, error: BanyanError) -> None:
        status = None
        if isinstance(error, HTTPStatusError):
            status = error.status_code
            if isinstance(error, AuthenticationError) and self.policy.keep_refused:
                self._give_up(job, *held(error, self.stats).args)
                return
            if status not in RETRY_STATUSES:
                self.outcome.ok = refused([job.record], error, self.stats) and self.outcome.ok
                return
            if status in _OVERLOAD and error.retry_after is not None:
                floor = min(error.retry_after, self.policy.config.max_retry_after)
                self.fanout.not_before = max(self.fanout.not_before, time.monotonic() + floor)
        if status in _OVERLOAD or isinstance(error, RequestTimeout | ConnectError):
            self.limiter.overload(started)
        note_error(error, self.stats)
        self._retry(job, str(error), doubt=in_doubt(error))

    def _retry(self, job: Job, error: str, doubt: bool) -> None:
        if doubt:
            self.stats.in_doubt()
        job.attempts += 1
        at = time.monotonic() + self.policy.backoff(job.attempts)
        if self.giving_up or job.attempts > self.policy.config.max_retries:
            self._give_up(job, DropReason.RETRIES_EXHAUSTED, error)
        elif self.deadline is not None and at > self.deadline:
            self._give_up(job, DropReason.DEADLINE, "the flush deadline passed while retrying")
        else:
            self.stats.add(retries=1)
            self.later.append((at, job))

    def _give_up(self, job: Job, reason: DropReason, error: str) -> None:
        # The server is failing: stop starting requests, let those in flight end.
        if not self.giving_up:
            self.giving_up = True
            self.outcome.reason, self.outcome.error = reason, error
        self.outcome.left.append(job.record)

    async def _abandon(self, reason: DropReason, error: str) -> None:
        """Stop now: what is in flight is cancelled and left (in doubt) with the rest."""
        self.giving_up = True
        self.outcome.reason, self.outcome.error = reason, error
        pending, self.pending = self.pending, {}
        self.done.clear()
        for answer in pending:
            answer.cancel()
        # One turn of the loop lets the pool close the cancelled requests' connections.
        await asyncio.sleep(0)
        for answer, (job, started) in pending.items():
            if answer.cancelled():
                self.stats.in_doubt()
                self.outcome.left.append(job.record)
            else:
                self._settle(job, started, answer.exception() or answer.result())


def _status_error(answer: Answer) -> HTTPStatusError:
    from banyan._transport import error_for

    return error_for(answer.status, answer.headers.get("retry-after"), answer.body)
