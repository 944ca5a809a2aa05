"""Delivering one batch: body, compression, retries, and what the answer means.

A batch body is the MessagePack array header followed by the records' bytes
as the caller encoded them: nothing is re-encoded. Connection errors,
timeouts, 408, 429 and 5xx are retried with exponential backoff and jitter,
Retry-After acting as a floor; other 4xx are final. Against an old backend
that has no batch endpoint (404/405) records go one per request, as JSON, to
the 1.0.1 endpoint, many at once (``_fanout``), scores left out (``_legacybody``).
Whatever cannot be delivered passes through :meth:`Delivery._on_undeliverable`
to ``spill`` (the disk spool) when one is set. Which failures are retried, and how
the lost records are counted, is :mod:`banyan._failures`.
"""

from __future__ import annotations

import os
import random
import threading
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from banyan._exceptions import AuthenticationError, BanyanError, HTTPStatusError
from banyan._failures import RETRY_STATUSES, GiveUp, held, note_error, refused
from banyan._legacybody import Job, legacy_jobs
from banyan._record import Encoded, repaired
from banyan._stats import DropReason, Stats
from banyan._wire import (
    BATCH_ID_HEADER,
    BATCH_PATH,
    IDEMPOTENCY_HEADER,
    JSON,
    MAX_BATCH_BYTES,
    MSGPACK,
    SINGLE_LOG_PATH,
    BatchResult,
    msgpack_array_header,
)

if TYPE_CHECKING:
    from banyan._config import Config
    from banyan._fanout import Fanout
    from banyan._transport import Transport

_LEGACY_STATUSES = frozenset({404, 405})
#: After a 404/405 from the batch endpoint, records go one by one for this long, then the
#: batch endpoint is tried again (the 404 may have come from a proxy being redeployed).
LEGACY_RECHECK = 300.0
#: HTTP/2's initial stream window: a body this small is sent whole without waiting for credit.
_H2_INITIAL_WINDOW = 65_535
#: The largest record a batch can carry (its array header takes 5 bytes).
MAX_RECORD_BYTES = MAX_BATCH_BYTES - 5
_decode_result = msgspec.json.Decoder(BatchResult).decode
_decode_result_msgpack = msgspec.msgpack.Decoder(BatchResult).decode


class Delivery:
    """Sends batches for one logger and accounts for every record in them."""

    def __init__(self, config: Config, transport: Transport, *, in_spool: bool = False) -> None:
        self._config = config
        self._transport = transport
        self._compress = _compressor(config.compression)
        #: Until when records go one by one to the 1.0.1 endpoint (monotonic).
        self._legacy_until = 0.0
        #: Until when the batch endpoint is known to exist or not (monotonic; HTTP/2 only).
        self._checked_until = 0.0
        self._not_before = 0.0
        self._fanout: Fanout | None = None
        self._random = random.Random()
        #: Takes (batch, the records of it) the server could not be made to take (the
        #: spool); None drops them.
        self.spill: Callable[[list[Encoded], list[Encoded], DropReason, str], None] | None = None
        #: ``time.monotonic()`` of the last 2xx: replay waits for a healthy backend.
        self.last_ok = 0.0
        #: The records it sends are spooled already (replay): a refused key leaves them there.
        self._in_spool = in_spool

    def deliver(
        self,
        records: list[Encoded],
        deadline: float | None,
        stop: threading.Event,
        stats: Stats,
        whole: list[Encoded] | None = None,
    ) -> bool:
        """Deliver ``records``, counting what became of them into ``stats``.

        Retries and errors are counted there too; the records the server could
        not be made to take go to ``spill`` at once when it is set, as part of
        ``whole``, the batch they come from (when they are a part sent again).
        """
        whole = records if whole is None else whole
        if len(records) == 1 and len(records[0]) > MAX_RECORD_BYTES:
            # Alone in its batch (the ring never puts a record over the batch limit with
            # others): the server would answer 413, which HTTP/2 clients may never read.
            return _too_large(records[0], stats)
        if (
            self._config.http2
            and time.monotonic() >= self._checked_until
            and sum(map(len, records)) > _H2_INITIAL_WINDOW
        ):
            self._probe(deadline)
        if self._legacy_until and time.monotonic() < self._legacy_until:
            return self._send_legacy(records, whole, deadline, stop, stats)
        parts: list[Encoded] = [msgpack_array_header(len(records))]
        parts += records
        body = b"".join(parts)
        headers = {"Content-Type": MSGPACK, BATCH_ID_HEADER: os.urandom(12).hex()}
        if self._compress is not None:
            body = self._compress[1](body)
            headers["Content-Encoding"] = self._compress[0]
        view = memoryview(body)
        try:
            response = self._attempts(
                lambda timeout: self._transport.request(
                    "POST", BATCH_PATH, content=view, headers=headers, timeout=timeout
                ),
                deadline,
                stop,
                stats,
            )
        except HTTPStatusError as exc:
            if exc.status_code in _LEGACY_STATUSES:
                self._legacy_until = time.monotonic() + LEGACY_RECHECK
                return self._send_legacy(records, whole, deadline, stop, stats)
            return refused(records, exc, stats)
        except GiveUp as exc:
            self._on_undeliverable(whole, records, exc, stats)
            return False
        resend, lost = self._settle(records, response, len(body), stats)
        if resend:
            # Normalized as log_prompt's slow path does: if the server refuses them again,
            # normalizing changes nothing more and they are counted as rejected.
            return self.deliver(resend, deadline, stop, stats, whole) and not lost
        return not lost

    def _probe(self, deadline: float | None) -> None:
        """Learn, with an empty batch, whether the server has the batch endpoint (HTTP/2 only).

        Over HTTP/2 a server that answers before reading a large body (a
        1.0.1 server's 404, a 413) leaves httpx waiting for flow-control
        credit until its timeout, or reports a protocol error, never the
        answer: so before the first batch of every LEGACY_RECHECK period that
        is too large to be sent without credit, an empty one goes.
        """
        self._checked_until = time.monotonic() + LEGACY_RECHECK
        timeout = self._config.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        try:
            if timeout > 0:
                self._transport.request(
                    "POST", BATCH_PATH, content=msgpack_array_header(0),
                    headers={"Content-Type": MSGPACK}, timeout=timeout,
                )  # fmt: skip
        except HTTPStatusError as exc:
            if exc.status_code in _LEGACY_STATUSES:
                self._legacy_until = self._checked_until
        except BanyanError:
            pass

    @property
    def not_before(self) -> float:
        """``time.monotonic()`` before which the server asked (Retry-After) not to be sent to."""
        fanout = self._fanout
        return max(self._not_before, fanout.not_before if fanout is not None else 0.0)

    def _attempts(
        self,
        send: Callable[[float | None], Any],
        deadline: float | None,
        stop: threading.Event,
        stats: Stats,
    ) -> Any:
        """Call ``send(timeout)`` until it succeeds, retrying what is worth retrying.

        ``timeout`` is the request timeout, cut short by ``deadline``.
        """
        attempt = 0
        while True:
            self._wait_not_before(deadline, stop)
            timeout = None
            if deadline is not None:
                timeout = min(self._config.timeout, deadline - time.monotonic())
                if timeout <= 0:
                    raise GiveUp(DropReason.DEADLINE, "the flush deadline passed")
            try:
                return send(timeout)
            except HTTPStatusError as exc:
                if exc.status_code not in RETRY_STATUSES:
                    if isinstance(exc, AuthenticationError) and self._keeps_refused():
                        raise held(exc, stats) from exc
                    raise
                error: BanyanError = exc
                if exc.retry_after is not None:
                    floor = min(exc.retry_after, self._config.max_retry_after)
                    self._not_before = max(self._not_before, time.monotonic() + floor)
            except BanyanError as exc:
                error = exc
            note_error(error, stats)
            attempt += 1
            if attempt > self._config.max_retries:
                raise GiveUp(DropReason.RETRIES_EXHAUSTED, str(error))
            stats.add(retries=1)
            self._sleep(self._backoff(attempt), deadline, stop)

    def _keeps_refused(self) -> bool:
        # #14: a refused key is a configuration error; the records wait in the spool for the
        # right one rather than being lost.
        return self.spill is not None or self._in_spool

    def _backoff(self, attempt: int) -> float:
        base = min(self._config.max_retry_delay, self._config.retry_delay * 2 ** (attempt - 1))
        return float(base * self._random.uniform(0.5, 1.0))

    def _wait_not_before(self, deadline: float | None, stop: threading.Event) -> None:
        delay = self._not_before - time.monotonic()
        if delay > 0:
            self._sleep(delay, deadline, stop)

    def _sleep(self, delay: float, deadline: float | None, stop: threading.Event) -> None:
        if deadline is not None and time.monotonic() + delay > deadline:
            raise GiveUp(DropReason.DEADLINE, "the flush deadline passed while retrying")
        if stop.wait(delay):
            raise GiveUp(DropReason.SHUTDOWN, "shut down while retrying")

    def _settle(
        self, records: list[Encoded], response: Any, size: int, stats: Stats
    ) -> tuple[list[Encoded], int]:
        """Count the server's answer: the rejected records that normalizing repaired (to send
        again), and how many rejected ones were lost."""
        try:
            if response.headers.get("Content-Type", "").startswith(MSGPACK):
                result = _decode_result_msgpack(response.content)
            else:
                result = _decode_result(response.content)
        except msgspec.DecodeError:
            # A 2xx without a readable body: the server took the batch.
            result = BatchResult(accepted=len(records), duplicates=0)
        self.last_ok = time.monotonic()
        delivered = min(len(records), result.accepted + result.duplicates)
        stats.http_version = self._transport.http_version
        stats.add(sent=delivered, duplicates=result.duplicates, batches_sent=1, bytes_sent=size)
        refused = len(records) - delivered
        indexes = {r.index for r in result.rejected if 0 <= r.index < len(records)}
        fixed = (repaired(records[index]) for index in sorted(indexes))
        resend = [record for record in fixed if record is not None][:refused]
        lost = refused - len(resend)
        if lost:
            first = result.rejected[0].error if result.rejected else "no reason given"
            stats.drop(DropReason.REJECTED, lost, f"server rejected a record: {first}")
            stats.warn_once("rejected", "banyan: the server rejected %d record(s): %s", lost, first)
        return resend, lost

    def _send_legacy(
        self,
        records: list[Encoded],
        whole: list[Encoded],
        deadline: float | None,
        stop: threading.Event,
        stats: Stats,
    ) -> bool:
        """Send each record as its own JSON request to the 1.0.1 endpoint, many at once."""
        stats.warn_once(
            "legacy", "banyan: the server has no batch endpoint; sending one record per request"
        )
        from banyan._fanout import Policy

        jobs = legacy_jobs(records, stats)
        kept = len(jobs) == len(records)
        fanout = self._fanout = self._transport.fanout()
        if fanout is None:
            return self._send_serial(jobs, whole, deadline, stop, stats) and kept
        policy = Policy(self._config, self._backoff, self._keeps_refused())
        outcome = fanout.send(jobs, deadline, stop, stats, policy)
        stats.legacy_concurrency = fanout.limiter.limit
        self.last_ok = max(self.last_ok, fanout.last_ok)
        if outcome.left:
            give_up = GiveUp(outcome.reason, outcome.error)
            self._on_undeliverable(whole, outcome.left, give_up, stats)
        return outcome.ok and kept

    def _send_serial(
        self,
        jobs: list[Job],
        whole: list[Encoded],
        deadline: float | None,
        stop: threading.Event,
        stats: Stats,
    ) -> bool:
        ok = True
        for index, job in enumerate(jobs):
            try:
                if stop.is_set():
                    raise GiveUp(DropReason.SHUTDOWN, "shut down while sending one by one")
                ok = self._send_one(job, deadline, stop, stats) and ok
            except GiveUp as exc:
                left = [job.record for job in jobs[index:]]
                self._on_undeliverable(whole, left, exc, stats)
                return False
        return ok

    def _send_one(
        self, job: Job, deadline: float | None, stop: threading.Event, stats: Stats
    ) -> bool:
        from banyan._fanout import in_doubt

        headers = {"Content-Type": JSON, IDEMPOTENCY_HEADER: job.key}

        def post(timeout: float | None) -> Any:
            try:
                return self._transport.request(
                    "POST", SINGLE_LOG_PATH, content=job.body, headers=headers, timeout=timeout
                )
            except BanyanError as exc:
                # Sent again (or spooled, and replayed) after an unknown outcome.
                if in_doubt(exc):
                    stats.in_doubt()
                raise

        try:
            self._attempts(post, deadline, stop, stats)
        except HTTPStatusError as exc:
            return refused([job.record], exc, stats)
        self.last_ok = time.monotonic()
        stats.http_version = self._transport.http_version
        stats.add(sent=1, bytes_sent=len(job.record))
        return True

    def _on_undeliverable(
        self, batch: list[Encoded], records: list[Encoded], give_up: GiveUp, stats: Stats
    ) -> None:
        """``records`` of ``batch`` the server could not be made to take: spilled, else dropped."""
        reason, error = give_up.args
        if self.spill is not None:
            self.spill(batch, records, reason, error)
        elif self._in_spool:
            # Counted for the replayer, which keeps the segment: nothing is lost, no warning.
            stats.drop(reason, len(records), error)
        else:
            stats.drop_undelivered(len(records), reason, error)


def _too_large(record: Encoded, stats: Stats) -> bool:
    error = f"a {len(record)} byte record is over the server's limit of {MAX_BATCH_BYTES} bytes"
    stats.drop(DropReason.TOO_LARGE, 1, error)
    stats.warn_once("too-large", "banyan: %s; it is dropped (further drops are counted)", error)
    return False


def _compressor(name: str | None) -> tuple[str, Callable[[bytes], bytes]] | None:
    if name == "gzip":
        # Level 1: on a LAN the CPU costs more than the bytes saved.
        return "gzip", _gzip
    if name == "zstd":
        import zstandard

        # One compressor per batch: a ZstdCompressor must not be shared by threads.
        return "zstd", lambda body: zstandard.ZstdCompressor(level=3).compress(body)
    return None


def _gzip(body: bytes) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(body) + packer.flush()
