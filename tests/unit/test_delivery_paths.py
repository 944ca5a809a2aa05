"""One Delivery, driven directly: what each request carries, and each way a batch ends."""

from __future__ import annotations

import gzip
import logging
import re
import time
from typing import Any

import msgspec
import orjson
import pytest
import zstandard
from fakes import OK, RECORDS, FakeResponse, Waits, delivering, one_by_one, status

from banyan._exceptions import BanyanError, ConnectError
from banyan._record import Score, encode
from banyan._stats import DropReason
from banyan._wire import BATCH_ID_HEADER, BATCH_PATH, MSGPACK, SINGLE_LOG_PATH


def test_a_batch_is_one_msgpack_post_with_a_fresh_batch_id() -> None:
    """POST to the batch path: the records as one MessagePack array, a 24-hex-digit batch
    id, no timeout without a deadline; the answer counted, its time and HTTP version kept."""
    delivery, fake, _ = delivering(OK)
    assert (delivery.last_ok, delivery.not_before) == (0.0, 0.0)
    before = time.monotonic()
    assert delivery(RECORDS, None, Waits())
    [(method, path, kw)] = fake.calls
    assert (method, path, kw["timeout"]) == ("POST", BATCH_PATH, None)
    assert kw["headers"]["Content-Type"] == MSGPACK
    assert re.fullmatch("[0-9a-f]{24}", kw["headers"][BATCH_ID_HEADER])
    assert "Content-Encoding" not in kw["headers"]
    body = bytes(kw["content"])
    assert msgspec.msgpack.decode(body) == [msgspec.msgpack.decode(r) for r in RECORDS]
    stats = delivery._stats
    assert (stats.sent, stats.batches_sent, stats.bytes_sent) == (3, 1, len(body))
    assert (stats.http_version, delivery.last_ok >= before) == ("HTTP/2", True)


@pytest.mark.parametrize(
    ("name", "unpack"), [("gzip", gzip.decompress), ("zstd", zstandard.decompress)]
)
def test_compression_names_and_compresses_the_body(name: str, unpack: Any) -> None:
    """compression= sends Content-Encoding and a body that unpacks to the batch."""
    delivery, fake, _ = delivering(OK, compression=name)
    assert delivery(RECORDS, None, Waits())
    [(_, _, kw)] = fake.calls
    assert kw["headers"]["Content-Encoding"] == name
    body = bytes(kw["content"])
    assert msgspec.msgpack.decode(unpack(body)) == [msgspec.msgpack.decode(r) for r in RECORDS]
    assert delivery._stats.bytes_sent == len(body)


def test_the_request_timeout_is_cut_short_by_the_deadline() -> None:
    """Each request gets the configured timeout, or what is left before the deadline."""
    delivery, fake, _ = delivering(OK, OK, timeout=10.0)
    before = time.monotonic()
    assert delivery(RECORDS, before + 2.0, Waits())
    after = time.monotonic()
    assert delivery(RECORDS, after + 100.0, Waits())
    first, second = (kw["timeout"] for _, _, kw in fake.calls)
    assert before + 2.0 - after <= first <= 2.0
    assert second == 10.0


def test_less_than_a_second_left_is_still_time_to_send() -> None:
    """Half a second before the deadline the batch is still sent."""
    delivery, fake, spilled = delivering(OK)
    assert delivery(RECORDS, time.monotonic() + 0.5, Waits())
    assert (len(fake.calls), spilled) == (1, [])


def test_a_deadline_already_passed_gives_the_batch_up_unsent() -> None:
    """Past the deadline nothing is sent: the batch is spilled, or dropped and counted."""
    delivery, fake, spilled = delivering()
    assert not delivery(RECORDS, time.monotonic() - 1, Waits())
    assert spilled == [(RECORDS, RECORDS, DropReason.DEADLINE, "the flush deadline passed")]
    delivery.spill = None
    assert not delivery(RECORDS, time.monotonic() - 1, Waits())
    assert fake.calls == []
    stats = delivery._stats
    assert stats.dropped[DropReason.DEADLINE] == 3
    assert stats.last_error == "the flush deadline passed"


def test_a_backoff_that_would_outlast_the_deadline_gives_up_at_once() -> None:
    """A retry wait that ends past the deadline is not waited: given up as deadline."""
    delivery, fake, spilled = delivering(status(503), retry_delay=5.0)
    waits = Waits()
    assert not delivery(RECORDS, time.monotonic() + 1.0, waits)
    assert (len(fake.calls), waits.delays) == (1, [])
    assert spilled[0][2:] == (DropReason.DEADLINE, "the flush deadline passed while retrying")


def test_a_retry_after_past_the_deadline_gives_up_at_once() -> None:
    """A Retry-After ending past the deadline is not waited either (the backoff is)."""
    delivery, fake, spilled = delivering(status(429, retry_after=30.0), retry_delay=0.001)
    waits = Waits()
    assert not delivery(RECORDS, time.monotonic() + 5.0, waits)
    assert len(fake.calls) == 1
    assert len(waits.delays) == 1
    assert waits.delays[0] <= 0.001
    assert spilled[0][2] == DropReason.DEADLINE


def test_a_shutdown_while_waiting_to_retry_gives_the_batch_up() -> None:
    """stop set during a retry wait: given up as shutdown."""
    delivery, _, spilled = delivering(status(503), retry_delay=0.001)
    waits = Waits()
    waits.set()
    assert not delivery(RECORDS, None, waits)
    assert spilled == [(RECORDS, RECORDS, DropReason.SHUTDOWN, "shut down while retrying")]


@pytest.mark.parametrize("last", [status(503), ConnectError("refused here")])
def test_exhausted_retries_give_up_with_the_last_error(last: BanyanError) -> None:
    """After max_retries the batch is given up with the last error, also kept in stats."""
    delivery, _, spilled = delivering(ConnectError("first"), last, max_retries=1, retry_delay=0.001)
    assert not delivery(RECORDS, None, Waits())
    assert spilled == [(RECORDS, RECORDS, DropReason.RETRIES_EXHAUSTED, str(last))]
    assert (delivery._stats.last_error, delivery._stats.retries) == (str(last), 1)


def test_a_msgpack_answer_is_read_as_msgpack() -> None:
    """An answer typed application/msgpack is decoded as such (duplicates count as sent)."""
    answer = msgspec.msgpack.encode({"accepted": 2, "duplicates": 1})
    delivery, _, _ = delivering(FakeResponse(raw=answer, headers={"Content-Type": MSGPACK}))
    assert delivery(RECORDS, None, Waits())
    assert (delivery._stats.sent, delivery._stats.duplicates) == (3, 1)


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/json"}])
def test_an_unreadable_2xx_counts_the_batch_as_taken(headers: dict[str, str]) -> None:
    """A 2xx whose body cannot be read (typed or not) means the server took every record."""
    delivery, _, _ = delivering(FakeResponse(raw=b"\xff\x00", headers=headers))
    assert delivery(RECORDS, None, Waits())
    stats = delivery._stats
    assert (stats.sent, stats.duplicates, sum(stats.dropped.values())) == (3, 0, 0)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"accepted": 2, "duplicates": 0, "rejected": [{"index": 1, "error": "bad ts"}]}, "bad ts"),
        ({"accepted": 2, "duplicates": 0}, "no reason given"),
    ],
)
def test_rejected_records_are_dropped_with_the_servers_first_reason(
    answer: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Records the server did not take are dropped as rejected, with its first reason."""
    delivery, _, _ = delivering(FakeResponse(answer))
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert not delivery(RECORDS, None, Waits())
    stats = delivery._stats
    assert (stats.sent, stats.dropped[DropReason.REJECTED]) == (2, 1)
    assert stats.last_error == f"server rejected a record: {reason}"
    assert caplog.messages == [f"banyan: the server rejected 1 record(s): {reason}"]


def test_final_refusals_are_warned_once_per_status_with_a_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a spool, a 400 and a 401 each warn once (the 401 naming the key); both drop
    and count."""
    refused, unauthorized = status(400), status(401)
    delivery, _, spilled = delivering(refused, unauthorized, status(400), spool_dir=False)
    delivery.spill = None
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert not delivery(RECORDS, None, Waits())
        assert delivery._stats.last_error == str(refused)
        assert not delivery(RECORDS, None, Waits())
        assert not delivery(RECORDS, None, Waits())
    tail = "; they are dropped (further drops are counted in get_stats())"
    assert caplog.messages == [
        f"banyan: the server refused a batch of logs, {refused}{tail}",
        f"banyan: the server refused a batch of logs, {unauthorized} (check the API key /"
        f" BANYAN_API_KEY){tail}",
    ]
    dropped = delivery._stats.dropped
    assert (dropped[DropReason.CLIENT_ERROR], dropped[DropReason.UNAUTHORIZED]) == (6, 3)
    assert spilled == []


def test_one_by_one_sends_post_each_record_as_json_without_ts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a 404 each record is POSTed alone, as JSON without ts (with the metadata 1.0.1
    always sent), to the 1.0.1 path."""
    delivery, fake, _ = delivering(status(404), OK, OK, OK)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        before = time.monotonic()
        assert delivery(RECORDS, None, Waits())
    assert caplog.messages == [
        "banyan: the server has no batch endpoint; sending one record per request"
    ]
    singles = fake.calls[1:]
    assert [(method, path) for method, path, _ in singles] == [("POST", SINGLE_LOG_PATH)] * 3
    assert [orjson.loads(kw["content"]) for _, _, kw in singles] == [
        {"id": f"r{n}", "input": "in", "output": "out", "metadata": {}} for n in range(3)
    ]
    stats = delivery._stats
    assert (stats.sent, stats.bytes_sent) == (3, sum(map(len, RECORDS)))
    assert (stats.http_version, delivery.last_ok >= before) == ("HTTP/2", True)


def test_one_refused_record_makes_a_one_by_one_send_false() -> None:
    """One record refused (400) among several: counted, and the send reports False."""
    delivery, _, _ = one_by_one(status(400), OK, OK)
    assert not delivery(RECORDS, None, Waits())
    stats = delivery._stats
    assert (stats.sent, stats.dropped[DropReason.CLIENT_ERROR]) == (5, 1)


def test_a_score_in_a_one_by_one_send_is_not_posted_and_counted_unsupported() -> None:
    """The serial 1.0.1 sender posts the records and never a score: the score is counted as
    unsupported (not spilled) and the send reports False."""
    delivery, fake, spilled = one_by_one(OK, OK, OK)
    score = encode(Score("s-1", 1.5, "stars", 4.0, record_id="r0"))
    assert not delivery([*RECORDS, score], None, Waits())
    assert [orjson.loads(kw["content"])["id"] for _, _, kw in fake.calls] == ["r0", "r1", "r2"]
    assert (delivery._stats.dropped[DropReason.UNSUPPORTED], spilled) == (1, [])


def test_one_by_one_sends_retry_and_keep_to_the_deadline() -> None:
    """A one-by-one send is retried (and counted) like a batch, with the deadline's timeout."""
    delivery, fake, _ = one_by_one(status(503), OK, OK, OK, retry_delay=0.001, timeout=10.0)
    waits = Waits()
    before = time.monotonic()
    assert delivery(RECORDS, before + 2.0, waits)
    assert len(waits.delays) == 1
    assert delivery._stats.retries == 1
    assert all(0 < kw["timeout"] <= 2.0 for _, _, kw in fake.calls)


def test_one_by_one_sends_past_the_deadline_are_given_up() -> None:
    """Past the deadline the one-by-one path sends nothing and spills the batch."""
    delivery, fake, spilled = one_by_one()
    assert not delivery(RECORDS, time.monotonic() - 1, Waits())
    assert fake.calls == []
    assert spilled == [(RECORDS, RECORDS, DropReason.DEADLINE, "the flush deadline passed")]
    delivery.spill = None
    assert not delivery(RECORDS, time.monotonic() - 1, Waits())
    assert delivery._stats.dropped[DropReason.DEADLINE] == 3


def test_the_first_one_by_one_pass_keeps_to_the_deadline() -> None:
    """The records sent one by one right after the 404 get the deadline's timeout too."""
    delivery, fake, _ = delivering(status(404), OK, OK, OK, timeout=10.0)
    assert delivery(RECORDS, time.monotonic() + 2.0, Waits())
    assert all(0 < kw["timeout"] <= 2.0 for _, _, kw in fake.calls)


def test_a_shutdown_during_one_by_one_sends_spills_the_rest() -> None:
    """stop set after the first record: the remaining records are spilled as shutdown."""
    waits = Waits()

    def first(method: str, path: str, **kw: Any) -> FakeResponse:
        waits.set()
        return OK

    delivery, _, spilled = one_by_one(first)
    assert not delivery(RECORDS, None, waits)
    shutdown = (DropReason.SHUTDOWN, "shut down while sending one by one")
    assert spilled == [(RECORDS, RECORDS[1:], *shutdown)]
