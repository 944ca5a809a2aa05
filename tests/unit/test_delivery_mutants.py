"""Delivery's less travelled paths, each pinned where a planted bug once went unseen (#21):
the record too large to send, the HTTP/2 probe, records sent again, refused keys kept,
the concurrent 1.0.1 sender."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import msgspec
import orjson
import pytest
from fakes import RECORDS, Counted, FakeResponse, Waits, delivering, one_by_one, status

from banyan._delivery import MAX_RECORD_BYTES
from banyan._exceptions import ConnectError
from banyan._fanout import Outcome, Policy
from banyan._record import Encoded, Record, Score, encode
from banyan._stats import DropReason
from banyan._wire import (
    BATCH_PATH,
    IDEMPOTENCY_HEADER,
    JSON,
    MAX_BATCH_BYTES,
    MSGPACK,
    msgpack_array_header,
)
from banyan._wire import SINGLE_LOG_PATH as SINGLE

#: Three records over HTTP/2's initial window together: the probe goes first.
BIG: list[Encoded] = [
    encode(Record(id=f"b{n}", ts=1.5, input="x" * 30_000, output="o")) for n in range(3)
]
PROBE = {"content": msgpack_array_header(0), "headers": {"Content-Type": MSGPACK}}
KEPT = "they are kept in the spool and sent by the first process whose key the server accepts"


def _sized(size: int) -> list[Encoded]:
    """A record of exactly ``size`` bytes."""
    base = len(encode(Record(id="s", ts=1.5, input="x" * 1000, output="")))
    record = encode(Record(id="s", ts=1.5, input="x" * (1000 + size - base), output=""))
    assert len(record) == size
    return [record]


def _paths(calls: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [path for _, path, _ in calls]


def test_a_record_over_the_batch_limit_is_dropped_unsent(caplog: pytest.LogCaptureFixture) -> None:
    """A record alone over the server's limit is dropped as too_large, warned once, never sent
    (nor spilled); one byte less goes."""
    delivery, fake, spilled = delivering(http2=False)
    huge: Encoded = b"x" * (MAX_RECORD_BYTES + 1)
    error = f"a {len(huge)} byte record is over the server's limit of {MAX_BATCH_BYTES} bytes"
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert not delivery([huge], None, Waits())
        assert not delivery([huge], None, Waits())
    assert (fake.calls, spilled) == ([], [])
    stats = delivery._stats
    assert (stats.dropped[DropReason.TOO_LARGE], stats.last_error) == (2, error)
    assert caplog.messages == [f"banyan: {error}; it is dropped (further drops are counted)"]
    fake.script.append(FakeResponse({"accepted": 1, "duplicates": 0}))
    assert delivery([huge[1:]], None, Waits())
    assert (_paths(fake.calls), stats.sent) == ([BATCH_PATH], 1)


def test_a_large_http2_batch_is_preceded_by_an_empty_probe_once_per_recheck() -> None:
    """Over HTTP/2 a batch over the initial window first sends an empty batch (the configured
    timeout, no deadline); not again before LEGACY_RECHECK."""
    delivery, fake, _ = delivering(timeout=7.0)
    assert delivery(BIG, None, Waits())
    assert delivery(BIG, None, Waits())
    assert _paths(fake.calls) == [BATCH_PATH] * 3
    probe = fake.calls[0][2]
    assert {key: probe[key] for key in PROBE} == PROBE
    assert (fake.calls[0][0], probe["timeout"]) == ("POST", 7.0)
    assert msgspec.msgpack.decode(probe["content"]) == []
    assert len(msgspec.msgpack.decode(fake.calls[1][2]["content"])) == 3


@pytest.mark.parametrize("answer", [status(404), status(405)])
def test_a_probe_answered_404_sends_one_by_one_without_trying_the_batch(answer: Any) -> None:
    """A probe answered 404/405 switches to the 1.0.1 path for the recheck period: no batch
    is tried, now or on the next call."""
    delivery, fake, _ = delivering(answer)
    assert delivery(BIG, None, Waits())
    assert delivery(BIG, None, Waits())
    assert _paths(fake.calls) == [BATCH_PATH] + [SINGLE] * 6


@pytest.mark.parametrize("answer", [status(400), ConnectError("down"), status(503)])
def test_a_probe_that_fails_otherwise_leaves_the_batch_to_be_sent(answer: Any) -> None:
    """A probe refused or failing any other way changes nothing: the batch goes as usual."""
    delivery, fake, _ = delivering(answer)
    assert delivery(BIG, None, Waits())
    assert _paths(fake.calls) == [BATCH_PATH] * 2
    assert delivery._stats.sent == 3


def test_the_probe_keeps_to_the_deadline_and_is_not_sent_past_it() -> None:
    """The probe's timeout is what is left before the deadline (even under a second); past
    the deadline nothing at all is sent."""
    delivery, fake, _ = delivering(timeout=10.0)
    before = time.monotonic()
    assert delivery(BIG, before + 0.5, Waits())
    probe = fake.calls[0][2]
    assert msgspec.msgpack.decode(probe["content"]) == []
    assert 0 < probe["timeout"] <= 0.5
    late, fake, spilled = delivering()
    assert not late(BIG, time.monotonic() - 1, Waits())
    assert (fake.calls, spilled[0][2]) == ([], DropReason.DEADLINE)


def test_a_batch_of_exactly_the_initial_window_needs_no_probe() -> None:
    """65,535 bytes of records fit HTTP/2's initial window: no probe before them."""
    delivery, fake, _ = delivering(FakeResponse({"accepted": 1, "duplicates": 0}))
    assert delivery(_sized(65_535), None, Waits())
    assert _paths(fake.calls) == [BATCH_PATH]
    assert len(msgspec.msgpack.decode(fake.calls[0][2]["content"])) == 1


def test_a_rejected_index_past_the_batch_is_counted_lost() -> None:
    """A rejection naming an index past the batch is a lost record, not an error."""
    answer = {"accepted": 2, "duplicates": 0, "rejected": [{"index": 3, "error": "bad"}]}
    delivery, _, _ = delivering(FakeResponse(answer))
    assert not delivery(RECORDS, None, Waits())
    assert delivery._stats.dropped[DropReason.REJECTED] == 1


#: r0 fine, r1 repairable (a non-text metadata key), r2 refused for good.
NON_TEXT_KEY: Any = {1: "a"}
MIXED = [RECORDS[0], encode(Record("r1", 1.5, "i", "o", metadata=NON_TEXT_KEY)), RECORDS[2]]
REJECTED = FakeResponse(
    {"accepted": 1, "duplicates": 0, "rejected": [{"index": i, "error": "bad"} for i in (1, 2)]}
)


def test_a_repaired_record_is_sent_again_within_the_deadline_and_the_lost_one_counts() -> None:
    """The repairable rejected record is sent again (retried, within the deadline); the send
    reports False for the one lost."""
    one = FakeResponse({"accepted": 1, "duplicates": 0})
    delivery, fake, _ = delivering(REJECTED, status(503), one, retry_delay=0.001, timeout=10.0)
    waits = Waits()
    assert not delivery(MIXED, time.monotonic() + 5.0, waits)
    assert all(0 < kw["timeout"] <= 5.0 for _, _, kw in fake.calls)
    assert len(fake.calls) == 3
    assert len(waits.delays) == 1
    stats = delivery._stats
    assert (stats.sent, stats.dropped[DropReason.REJECTED], stats.retries) == (2, 1, 1)


def test_a_repaired_record_given_up_is_spilled_as_part_of_its_batch() -> None:
    """A record sent again and given up on is spilled with the whole batch it came from."""
    delivery, _, spilled = delivering(REJECTED, status(503), max_retries=0)
    assert not delivery(MIXED, None, Waits())
    [(batch, records, reason, _)] = spilled
    assert (batch, len(records), reason) == (MIXED, 1, DropReason.RETRIES_EXHAUSTED)


def test_a_refused_key_with_a_spool_keeps_the_batch_warned_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """401 (then 403) with a spool: the batch is spilled as unauthorized, the error kept, and
    the user told loudly, once per status, that the records wait for the right key."""
    refusals = [status(401), status(403), status(401)]
    delivery, _, spilled = delivering(*refusals)
    with caplog.at_level(logging.WARNING, logger="banyan"), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        for _ in refusals:
            assert not delivery(RECORDS, None, Waits())
    assert spilled[0] == (RECORDS, RECORDS, DropReason.UNAUTHORIZED, str(refusals[0]))
    assert delivery._stats.last_error == str(refusals[-1])
    hint = " (check the API key / BANYAN_API_KEY)"
    assert caplog.messages == [
        f"banyan: the server refused a batch of logs, {refusal}{hint}; {KEPT}"
        for refusal in refusals[:2]
    ]


def _replaying(*script: Any, **options: Any) -> Counted:
    """A replay's delivery: no spill, its records already in the spool."""
    delivery, fake, _ = delivering(*script, **options)
    return Counted(delivery._config, fake, in_spool=True)


def test_a_replayed_batch_refused_its_key_stays_in_the_spool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Replaying, a 401 is counted for the replayer (which keeps the segment) and warned as
    kept, not as dropped."""
    replay = _replaying(status(401))
    with caplog.at_level(logging.WARNING, logger="banyan"), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert not replay(RECORDS, None, Waits())
    assert replay._stats.dropped[DropReason.UNAUTHORIZED] == 3
    assert [KEPT in message for message in caplog.messages] == [True]


def test_a_replayed_batch_given_up_is_counted_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Replaying, a batch given up is counted with its reason and error, and not warned
    about: nothing is lost, the segment stays."""
    replay = _replaying()
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert not replay(RECORDS, time.monotonic() - 1, Waits())
    stats = replay._stats
    assert stats.dropped[DropReason.DEADLINE] == 3
    assert stats.last_error == "the flush deadline passed"
    assert caplog.messages == []


def test_each_refused_status_warns_once_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    """Without a spool, a 400 and a 422 warn apart, and so do a 401 and a 403."""
    script = [status(400), status(422), status(401), status(403), status(400)]
    delivery, _, _ = delivering(*script, spool_dir=False)
    delivery.spill = None
    with caplog.at_level(logging.WARNING, logger="banyan"), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        for _ in script:
            assert not delivery(RECORDS, None, Waits())
    assert [message.split(", ")[1][:8] for message in caplog.messages] == [
        "HTTP 400",
        "HTTP 422",
        "HTTP 401",
        "HTTP 403",
    ]


def test_a_permanent_transport_error_is_warned_loudly_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error retrying cannot fix is warned once, saying the records wait in the spool."""
    error = ConnectError("no such host")
    error.permanent = True
    delivery, _, _ = delivering(error, error, retry_delay=0.001)
    with caplog.at_level(logging.WARNING, logger="banyan"), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert delivery(RECORDS, None, Waits())
    assert caplog.messages == [
        f"banyan: cannot reach the server, and retrying will not help: {error}; "
        "log records are kept in the spool (if any) until this is fixed"
    ]


def test_a_one_by_one_request_is_json_keyed_by_the_record_id() -> None:
    """Each 1.0.1 request is typed JSON and carries the record's id as its idempotency key."""
    delivery, fake, _ = one_by_one()
    assert delivery(RECORDS, None, Waits())
    headers = [kw["headers"] for _, _, kw in fake.calls]
    assert headers == [{"Content-Type": JSON, IDEMPOTENCY_HEADER: f"r{n}"} for n in range(3)]


@dataclass
class FakeFanout:
    """The concurrent 1.0.1 sender: records what it is asked, answers ``outcome``."""

    outcome: Outcome = field(default_factory=Outcome)
    last_ok: float = 0.0
    not_before: float = 0.0
    limiter: Any = field(default_factory=lambda: SimpleNamespace(limit=7))
    sends: list[tuple[Any, ...]] = field(default_factory=list)

    def send(self, *args: Any) -> Outcome:
        self.sends.append(args)
        return self.outcome


def _fanned(outcome: Outcome | None = None) -> tuple[Counted, FakeFanout, list[Any]]:
    delivery, fake, spilled = delivering(status(404))
    fake.pool = FakeFanout(outcome or Outcome())
    return delivery, fake.pool, spilled


def test_the_concurrent_sender_is_handed_the_jobs_and_this_deliverys_policy() -> None:
    """With a concurrent 1.0.1 sender, the jobs (scores left out), the deadline, stop event,
    stats and a policy of this delivery's settings and backoff go to it; its limit and
    its last success are kept."""
    delivery, fanout, _ = _fanned()
    score = encode(Score("s-1", 1.5, "stars", 4.0, record_id="r0"))
    fanout.last_ok, delivery.last_ok, waits = 5.0, 3.0, Waits()
    end = time.monotonic() + 60
    assert not delivery([*RECORDS, score], end, waits)
    [(jobs, deadline, stop, stats, policy)] = fanout.sends
    assert [orjson.loads(job.body)["id"] for job in jobs] == ["r0", "r1", "r2"]
    assert (deadline, stop, stats) == (end, waits, delivery._stats)
    assert policy == Policy(delivery._config, delivery._backoff, True)
    assert (stats.legacy_concurrency, delivery.last_ok) == (7, 5.0)
    fanout.last_ok = 1.0
    assert delivery(RECORDS, None, waits)
    assert delivery.last_ok == 5.0


def test_what_the_concurrent_sender_leaves_is_spilled_with_its_reason() -> None:
    """Records the concurrent sender could not deliver are spilled, as part of their batch,
    with its reason and error (without a spool, dropped and counted); the send is False."""
    left = Outcome(False, RECORDS[1:], DropReason.DEADLINE, "busy")
    delivery, fanout, spilled = _fanned(left)
    assert not delivery(RECORDS, None, Waits())
    assert spilled == [(RECORDS, RECORDS[1:], DropReason.DEADLINE, "busy")]
    delivery.spill = None
    assert not delivery(RECORDS, None, Waits())
    assert delivery._stats.dropped[DropReason.DEADLINE] == 2
    fanout.not_before = time.monotonic() + 60
    assert delivery.not_before == fanout.not_before


def test_a_score_sent_one_by_one_concurrently_makes_the_send_false() -> None:
    """A score left out of the concurrent sender's jobs makes the send report False."""
    delivery, _, _ = _fanned()
    score = encode(Score("s-1", 1.5, "stars", 4.0, record_id="r0"))
    assert delivery(RECORDS, None, Waits())
    assert not delivery([*RECORDS, score], None, Waits())
    assert delivery._stats.dropped[DropReason.UNSUPPORTED] == 1
