"""Counters for ``get_stats()``, the ``DropReason`` enum and warn-once.

Accounting rule: every record handed to ``log_prompt`` ends up in exactly one
of sent, dropped (by reason), queued, in flight or spooled, so that
``logs_queued == logs_sent + logs_dropped + queue_size + in_flight + spooled_pending``
in every ``get_stats()`` (the :class:`~banyan._ledger.Ledger` moves records).

``spooled_pending`` is ``spooled - replayed - spool losses`` (evicted and
corrupt records): what this process put in the spool minus what it took out.
Replay settles segments of any process, so in a process that replayed
another's backlog it is negative; summed over the processes sharing a spool
directory it is what the spool holds. Replayed records count in ``logs_sent``
(or ``logs_dropped`` when the server rejects them) once their segment is
acknowledged.

A batch in flight when ``shutdown`` reaches its deadline is counted as
spooled (or dropped); should the server still take it, it stays counted so
and ``delivered_after_shutdown`` says how many records that happened to.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
from typing import Any

from banyan import _warn
from banyan._record import gil_enabled

log = logging.getLogger("banyan")
#: Whether this CPython has a GIL: without one, a bare ``+=`` on a shared counter races.
GIL = gil_enabled()


class DropReason(str, enum.Enum):
    """Why a record was lost; every loss is counted under one of these."""

    NOT_CONFIGURED = "not_configured"
    QUEUE_FULL = "queue_full"
    TOO_LARGE = "too_large"
    ENCODE_ERROR = "encode_error"
    INTERNAL_ERROR = "internal_error"
    REJECTED = "rejected"
    CLIENT_ERROR = "client_error"
    UNAUTHORIZED = "unauthorized"
    RETRIES_EXHAUSTED = "retries_exhausted"
    DEADLINE = "deadline"
    SHUTDOWN = "shutdown"
    CLOSED = "closed"
    SPOOL_FULL = "spool_full"
    SPOOL_ERROR = "spool_error"
    SPOOL_EVICTED = "spool_evicted"
    SPOOL_CORRUPT = "spool_corrupt"
    #: A record the server cannot store: a score sent to a 1.0.1 server, never sent.
    UNSUPPORTED = "unsupported"
    # production controls (#16): records the user chose not to send
    DISABLED = "disabled"
    SAMPLED = "sampled"
    BEFORE_SEND = "before_send"
    BEFORE_SEND_ERROR = "before_send_error"


@dataclasses.dataclass(frozen=True)
class SpoolCounts:
    """The spool's counters as ``get_stats()`` reports them (zeros without a spool)."""

    spooled: int = 0
    replayed: int = 0
    evicted: int = 0
    lost: int = 0
    corrupt_frames: int = 0
    segments: int = 0
    bytes: int = 0


class Stats:
    """Delivery-side counters, updated under one lock never held across I/O.

    A logger's own is a :class:`~banyan._ledger.Ledger`; a plain Stats is
    the tally of one export (``scratch``), added to the ledger when it settles.
    """

    def __init__(self) -> None:
        # Re-entrant: a log_prompt run by a signal handler may count a drop meanwhile.
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        #: Where facts about requests (not records) go at once: the logger's own counters.
        self._root = self
        self.dropped = dict.fromkeys(DropReason, 0)
        self.sent = 0
        self.duplicates = 0
        self.retries = 0
        self.batches_sent = 0
        self.bytes_sent = 0
        self.direct = 0
        self.spooled_from_queue = 0
        self.entry_dropped = 0
        self.skipped = 0
        self.sticky_missing = 0
        self.delivered_after_shutdown = 0
        self.possible_duplicates = 0
        #: The 1.0.1 path's concurrency limit after its last batch (0: never used).
        self.legacy_concurrency = 0
        self.prompt_errors = 0
        self.last_error: str | None = None
        self.http_version: str | None = None

    def skip(self) -> bool:
        """Count a record not logged by the prompt's choice; True, as ``log_prompt`` returns."""
        if GIL:  # no switch between the load and the store (the ring's fast path argues it)
            self.skipped += 1
        else:
            with self._lock:
                self.skipped += 1
        return True

    def drop(
        self, reason: DropReason, count: int = 1, error: str | None = None, entry: bool = False
    ) -> None:
        """Count ``count`` records lost for ``reason``.

        ``entry`` marks records lost before they reached the ring (they were
        never pushed, so ``logs_queued`` must count them separately).
        """
        with self._lock:
            self.dropped[reason] += count
            if entry:
                self.entry_dropped += count
            if error is not None:
                self.last_error = error

    def drop_entry(self, reason: DropReason, error: object) -> bool:
        """Count one record lost before it reached the ring, warn once; False (never raises)."""
        try:
            self.drop(reason, error=str(error), entry=True)
            self.warn_once(
                f"lost-{reason.value}",
                "banyan: a log record was dropped (%s: %s); further drops are counted",
                reason.value,
                error,
            )
        except Exception:
            pass
        return False

    def drop_undelivered(self, count: int, reason: DropReason, error: str) -> None:
        """Count ``count`` records given up on after they left the ring, warn once per reason."""
        self.drop(reason, count, error)
        self.warn_undelivered(count, reason, error)

    def warn_undelivered(self, count: int, reason: DropReason, error: str) -> None:
        """Warn once per reason that ``count`` records could not be delivered (counted apart)."""
        self.warn_once(
            f"undeliverable-{reason.value}",
            "banyan: %d log record(s) could not be delivered (%s: %s); "
            "further losses are counted in get_stats()",
            count,
            reason.value,
            error,
        )

    def add(self, **deltas: int) -> None:
        """Add to several counters at once (delivery side, off the hot path)."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def scratch(self) -> Stats:
        """Counters for one replayed segment, warning through this object's warn-once set."""
        child = Stats()
        child._warned = self._warned
        child._root = self._root
        return child

    def in_doubt(self, count: int = 1) -> None:
        """Count records sent again after an unknown outcome (possible duplicates at the server).

        Counted at once in the logger's counters, whatever becomes of the batch.
        """
        self._root.add(possible_duplicates=count)

    def error(self, message: str) -> None:
        """Remember the most recent delivery error for ``get_stats()``."""
        self.last_error = message

    def warn_once(self, key: str, message: str, *args: object) -> None:
        """Log ``message`` on the ``banyan`` logger the first time ``key`` is seen."""
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning(message, *args)

    def warn_loudly(self, key: str, message: str) -> None:
        """Warn once where the user sees it without any logging set up (Python's warnings, on
        stderr by default), and on the ``banyan`` logger; a problem retrying will not fix."""
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning("%s", message)
        _warn.warn_once(key, message)

    def counters(self) -> dict[str, Any]:
        """The ``get_stats()`` fields about requests and prompts (the ledger adds the records')."""
        with self._lock:
            return {
                "duplicates": self.duplicates,
                "retries": self.retries,
                "batches_sent": self.batches_sent,
                "bytes_sent": self.bytes_sent,
                "delivered_after_shutdown": self.delivered_after_shutdown,
                "possible_duplicates": self.possible_duplicates,
                "legacy_concurrency": self.legacy_concurrency,
                "logs_skipped": self.skipped,
                "experiment_sticky_missing": self.sticky_missing,
                "prompt_errors": self.prompt_errors,
                "http_version": self.http_version,
                "last_error": self.last_error,
            }
