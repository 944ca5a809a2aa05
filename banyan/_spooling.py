"""A logger's spooling: what the ring and the server cannot take goes to disk and comes back.

The :class:`~banyan._spool.Spool` is opened once per logger and survives a
fork; :class:`Spooling` is the per-process glue around it, built beside the
flusher: the :class:`~banyan._replay.Replayer` that sends the spool back,
the spill of batches the server would not take, the fallback when the ring
or the spool refuses a record, and the spool's counters for ``get_stats()``.
The spool says why it refused a record (a ``DropReason``); the
:class:`~banyan._ledger.Ledger` counts where each record went.
"""

from __future__ import annotations

import dataclasses

from banyan._config import Config
from banyan._delivery import Delivery
from banyan._exceptions import ConfigurationError
from banyan._flusher import Flusher
from banyan._ledger import Batch, Ledger, Refused
from banyan._record import Encoded
from banyan._replay import Replayer
from banyan._spool import Spool
from banyan._spooldir import check_private, listing
from banyan._stats import DropReason, SpoolCounts
from banyan._transport import Transport

# Segment files: durable mode seals one per flush interval even when nearly empty.
_SEGMENT_BYTES = {"buffered": 4 << 20, "durable": 1 << 20}


def open_spool(config: Config) -> Spool | None:
    """The spool ``config`` asks for; None when ``spool_dir`` turns it off.

    Raises ConfigurationError when the directory exists and others may write
    it or own it (``_spooldir.check_private``).
    """
    directory = config.spool_directory()
    if directory is None:
        return None
    try:
        check_private(directory)
    except OSError as exc:
        raise ConfigurationError(f"{exc}: use a directory only this user can write") from None
    segment = min(_SEGMENT_BYTES[config.durability], max(64 << 10, config.spool_max_bytes // 4))
    server = {"base_url": config.base_url, "project_id": config.project_id}
    return Spool(directory, segment_bytes=segment, max_total_bytes=config.spool_max_bytes,
                 sync=config.spool_sync, sync_interval=config.flush_interval,
                 server=server)  # fmt: skip


class Spooling:
    """One process's glue between a logger's flusher and its spool.

    Built before the flusher (whose side job is :attr:`replayer`'s ``step``),
    then :meth:`bind`-ed to it.
    """

    _flusher: Flusher

    def __init__(
        self, spool: Spool, config: Config, transport: Transport, ledger: Ledger, live: Delivery
    ) -> None:
        self.spool = spool
        self._stats = ledger
        # One attempt per replayed batch: a failure keeps the segment and backs off instead.
        once = dataclasses.replace(config, max_retries=0)
        self.replayer = Replayer(
            spool,
            lambda: Delivery(once, transport, in_spool=True),
            ledger,
            batch=(config.batch_max_records, config.batch_max_bytes),
            seal_interval=config.flush_interval,
            backoff=(max(config.retry_delay, 0.05), config.max_retry_delay),
            healthy=lambda: live.last_ok,
            prepare=config.durability == "durable",
        )
        live.spill = self.spill

    def bind(self, flusher: Flusher) -> None:
        """Work with ``flusher``: spill into its settle, wake it when the spool wants a spare."""
        self._flusher = flusher
        self.spool.wake = self.wake

    def wake(self) -> None:
        """Called by the spool, under its lock, when its active segment is half full."""
        self.replayer.prepare_wanted = True
        self._flusher.wake()

    def overflow(self, data: Encoded) -> bool:
        """Buffered mode: the ring is full; spool ``data`` instead (False, counted, if refused)."""
        refusal = self.spool.add(data)
        if refusal is None:
            self._stats.warn_once(
                "queue-full-spool",
                "banyan: the log queue is full (%d bytes); records go to the spool at %s",
                self._flusher.ring.max_bytes,
                self.spool.directory,
            )
            return True
        return self._stats.drop_entry(refusal, "the queue is full and the spool refused a record")

    def refused(self, data: Encoded, refusal: DropReason) -> bool:
        """Durable mode: the spool refused ``data``; keep it in the ring as buffered mode would."""
        if self._flusher.ring.push(data):
            self._stats.warn_once(
                "spool-refused",
                "banyan: the spool refused a record (%s: %s); it is kept in memory instead",
                refusal.value,
                self.spool.last_error,
            )
            return True
        return self._stats.drop_entry(refusal, "the spool refused a record and the queue is full")

    def spill(
        self, batch: list[Encoded], records: list[Encoded], reason: DropReason, error: str
    ) -> None:
        """Delivery gave up on ``records`` of ``batch``: spool them (unless shutdown() took
        the batch already, or close() began and spools them itself)."""
        if reason is DropReason.UNAUTHORIZED:
            # flush() is not done while the key is refused (#14), whether or not it waits for
            # a replay to find that out.
            self.replayer.key_refused = True
        if not self._stats.spilling(batch, records):
            return
        self._stats.spill(batch, len(records), self._keep(records, reason, error), error)

    def give_up(self, batches: list[Batch], reason: DropReason, error: str) -> int:
        """At shutdown: spool the records of ``batches``; returns the number lost."""
        records = [record for batch in batches for record in batch.records]
        return self._stats.give_up(batches, self._keep(records, reason, error), error)

    def _keep(self, records: list[Encoded], reason: DropReason, error: str) -> Refused:
        """Spool ``records``: how many the spool refused, by reason."""
        kept, refused = self.spool.add_many(records)
        if kept:
            self._stats.warn_once(
                "spooled",
                "banyan: log records could not be delivered now (%s: %s); they are kept in "
                "the spool at %s and replayed later",
                reason.value,
                error,
                self.spool.directory,
            )
        return refused

    def hand_over(self) -> None:
        """At shutdown: close the spool, saying how many records wait for the next process."""
        left = self.spool.close()
        if left:
            self._stats.warn_once(
                "handed-over",
                "banyan: shutdown left %d record(s) in the spool at %s; the next process "
                "with this server and project sends them",
                left,
                self.spool.directory,
            )

    def lost(self) -> int:
        """Records the spool lost: evicted to make room, or in corrupt frames."""
        return self.spool.evicted + self.spool.lost

    def counts(self) -> SpoolCounts:
        """The spool's counters and what its directory holds, for ``get_stats()``."""
        spool = self.spool
        segments, size = listing(spool.directory)
        return SpoolCounts(spool.spooled, spool.replayed, spool.evicted, spool.lost,
                           spool.corrupt_frames, len(segments), size)  # fmt: skip
