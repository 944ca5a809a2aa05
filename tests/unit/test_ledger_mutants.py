"""The ledger's edges that random interleavings rarely reach (mutants of _ledger.py, issue 21)."""

from __future__ import annotations

import logging
import threading

import pytest

from banyan._ledger import Ledger
from banyan._record import Encoded
from banyan._ring import Ring
from banyan._stats import DropReason

PARTS = ("logs_sent", "logs_dropped", "queue_size", "in_flight", "spooled_pending")


def _taken(ledger: Ledger, count: int) -> list[Encoded]:
    """``count`` records pushed into a ring and taken from it as one batch."""
    ring = Ring(10**6, 10**6, 10**6, lambda: None)
    for n in range(count):
        assert ring.push(b"record %d" % n)
    records = ledger.take(ring, count, 10**6)[1]
    assert len(records) == count
    return records


def _adds_up(ledger: Ledger) -> dict[str, object]:
    view = ledger.view()
    assert view["logs_queued"] == sum(view[part] for part in PARTS), view
    return view


def test_a_tally_counting_more_than_its_batch_counts_the_drops_and_only_the_rest_sent() -> None:
    """A tally whose sent and dropped overlap (3 for a batch of 2) counts each record once."""
    ledger = Ledger()
    records = _taken(ledger, 2)
    tally = ledger.scratch()
    tally.add(sent=2)
    tally.drop(DropReason.REJECTED, 1)
    assert ledger.settle(records, tally)
    view = _adds_up(ledger)
    assert (view["logs_sent"], view["logs_dropped"], view["in_flight"]) == (1, 1, 0)


def test_records_an_export_left_uncounted_are_internal_errors_warned_with_their_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Records a tally did not count are dropped as internal_error, and warned about once."""
    ledger = Ledger()
    with caplog.at_level(logging.WARNING, logger="banyan"):
        for size in (2, 3):
            tally = ledger.scratch()
            tally.add(sent=1)
            assert ledger.settle(_taken(ledger, size), tally)
    assert caplog.messages == ["banyan: internal error while sending logs: 1 record(s) lost"]
    assert _adds_up(ledger)["dropped"]["internal_error"] == 3  # type: ignore[index]


def test_an_export_that_raised_is_warned_about_once_not_again_for_its_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The export's own warning ("export") and the count of its lost records share one key."""
    ledger = Ledger()
    with caplog.at_level(logging.WARNING, logger="banyan"):
        ledger.warn_once("export", "banyan: internal error while sending logs: %r", "boom")
        assert ledger.settle(_taken(ledger, 2), ledger.scratch())
    assert len(caplog.messages) == 1


def test_once_close_began_delivery_leaves_the_part_it_gave_up_on_to_close() -> None:
    """After ``closing``, a batch from the ring is not spooled by delivery: close() gets the
    part in a batch of its own, and the identity holds throughout."""
    ledger = Ledger()
    records = _taken(ledger, 3)
    ledger.closing = True
    assert not ledger.spilling(records, records[:2])
    tally = ledger.scratch()
    tally.add(sent=1)
    assert ledger.settle(records, tally)
    assert _adds_up(ledger)["in_flight"] == 2
    batches = ledger.abandon()
    assert [batch.records for batch in batches] == [records[:2]]
    assert ledger.give_up(batches, {}, "at shutdown") == 0
    view = _adds_up(ledger)
    assert (view["logs_sent"], view["in_flight"], view["spooled_pending"]) == (1, 0, 0)
    assert ledger.spooled_from_queue == 2
    assert not ledger._batches  # forgotten, not only counted


def test_a_spill_the_spool_refused_keeps_its_error_and_warns_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The error a spill was refused with becomes last_error and is named in the warning."""
    ledger = Ledger()
    records = _taken(ledger, 2)
    assert ledger.spilling(records, records)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        ledger.spill(records, 2, {DropReason.SPOOL_FULL: 2}, "HTTP 503")
    assert ledger.last_error == "HTTP 503"
    assert caplog.messages == [
        "banyan: 2 log record(s) could not be delivered (spool_full: HTTP 503); "
        "further losses are counted in get_stats()"
    ]


def test_shutdown_gives_up_every_batch_it_took_and_keeps_its_error() -> None:
    """give_up forgets the abandoned batches (one settled late included), keeps its error
    as last_error, and returns how many records were lost."""
    ledger = Ledger()
    late, other = _taken(ledger, 2), _taken(ledger, 1)
    ledger.closing = True
    batches = ledger.abandon()
    assert len(batches) == 2
    tally = ledger.scratch()
    tally.add(sent=2)
    assert not ledger.settle(late, tally)
    assert ledger.give_up(batches, DropReason.SHUTDOWN, "still queued at shutdown") == 3
    assert not ledger._batches  # forgotten, not only counted
    assert ledger.last_error == "still queued at shutdown"
    tally = ledger.scratch()
    tally.add(sent=1)
    assert not ledger.settle(other, tally)
    assert ledger.view()["delivered_after_shutdown"] == 3


def test_spills_are_the_ring_batches_delivery_is_spooling_part_of() -> None:
    """Only a batch from the ring with a spill under way counts: not an idle one, not a
    blocking log_prompt's."""
    ledger = Ledger()
    direct: list[Encoded] = [b"direct"]
    ledger.sent_directly(direct)
    records = _taken(ledger, 2)
    assert not ledger.spills()
    assert ledger.spilling(direct, direct)
    assert not ledger.spills()
    assert ledger.spilling(records, records[:1])
    assert ledger.spills()


class _Timed(threading.Condition):
    """A condition that notes each wait's timeout and refuses one beyond ``most``."""

    def __init__(self, lock: threading.RLock, most: float) -> None:
        super().__init__(lock)
        self.most = most
        self.timeouts: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        assert 0 <= timeout <= self.most, timeout
        self.timeouts.append(timeout)
        return super().wait(timeout)


def test_abandon_waits_for_a_spill_under_way_at_most_its_timeout() -> None:
    """abandon(timeout) waits for a spill that does not settle, each wait within the time
    left, and then leaves that batch to its export (settled by it, not given up)."""
    ledger = Ledger()
    records = _taken(ledger, 2)
    assert ledger.spilling(records, records[:1])
    ledger._settled = timed = _Timed(ledger._lock, most=0.05)
    ledger.closing = True
    assert ledger.abandon(0.05) == []
    assert timed.timeouts, "did not wait"
    assert timed.timeouts[0] > 0, timed.timeouts
    timed.most = 0.0
    assert ledger.abandon() == []  # by default it does not wait


def test_a_fresh_ledger_is_not_closing() -> None:
    """Until close() begins, delivery spools the part of a ring batch it gave up on itself."""
    ledger = Ledger()
    records = _taken(ledger, 1)
    assert ledger.spilling(records, records)


def test_delivery_may_not_spool_part_of_a_batch_the_ledger_does_not_hold() -> None:
    """spilling() is False for records never taken and for a batch shutdown abandoned."""
    ledger = Ledger()
    stranger: list[Encoded] = [b"never taken"]
    assert not ledger.spilling(stranger, stranger)
    records = _taken(ledger, 2)
    ledger.closing = True
    assert ledger.abandon() != []
    assert not ledger.spilling(records, records[:1])


def test_every_part_delivery_gave_up_on_after_close_began_is_left_to_close() -> None:
    """Two parts of one batch given up on after ``closing`` are both held for close()."""
    ledger = Ledger()
    records = _taken(ledger, 3)
    ledger.closing = True
    assert not ledger.spilling(records, records[:1])
    assert not ledger.spilling(records, records[1:2])
    assert ledger.settle(records, ledger.scratch())
    assert [batch.records for batch in ledger.abandon()] == [records[:2]]


def test_the_legacy_concurrency_seen_last_is_kept() -> None:
    """A tally's legacy_concurrency replaces the ledger's; a tally without one keeps it."""
    ledger = Ledger()
    for seen in (4, 0):
        tally = ledger.scratch()
        tally.add(sent=1)
        tally.legacy_concurrency = seen
        assert ledger.settle(_taken(ledger, 1), tally)
        assert ledger.legacy_concurrency == 4
