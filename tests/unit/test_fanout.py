"""The 1.0.1 path's adaptive concurrency limit and rate cap (on a fake clock), and its
parsing of HTTP/1.1 answers."""

from __future__ import annotations

import orjson
import pytest

from banyan._fanout import INITIAL_LIMIT, Limiter
from banyan._h1pool import Answer, _parse
from banyan._legacybody import legacy_job, legacy_jobs
from banyan._record import Record, Score, UsageRecord, encode
from banyan._stats import DropReason, Stats


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def answer_a_round(limiter: Limiter, clock: Clock, latency: float = 0.05) -> None:
    for _ in range(limiter.limit):
        limiter.success(clock.now, latency)


def test_the_limit_starts_moderate_and_doubles_per_round_of_fast_answers() -> None:
    """Start at 8; each round of answers as fast as the best doubles it, up to the ceiling."""
    clock = Clock()
    limiter = Limiter(100, None, clock)
    assert limiter.limit == INITIAL_LIMIT == 8
    seen = []
    for _ in range(5):
        answer_a_round(limiter, clock)
        seen.append(limiter.limit)
    assert seen == [16, 32, 64, 100, 100]


def test_slow_answers_hold_the_limit() -> None:
    """Answers more than twice as slow as the best seen do not grow the limit."""
    clock = Clock()
    limiter = Limiter(100, None, clock)
    limiter.success(clock.now, 0.05)
    answer_a_round(limiter, clock, latency=0.5)
    answer_a_round(limiter, clock, latency=0.5)
    assert limiter.limit == 8


def test_overload_halves_once_per_round_then_growth_is_additive() -> None:
    """A burst of 429s from requests started before the cut halves once; then +1 per round."""
    clock = Clock()
    limiter = Limiter(100, None, clock)
    answer_a_round(limiter, clock)
    answer_a_round(limiter, clock)
    assert limiter.limit == 32
    started = clock.now
    clock.now += 1
    for _ in range(20):
        limiter.overload(started)
    assert limiter.limit == 16
    clock.now += 1
    limiter.overload(clock.now)
    assert limiter.limit == 8
    answer_a_round(limiter, clock)
    answer_a_round(limiter, clock)
    assert limiter.limit == 10


def test_overload_never_goes_below_one() -> None:
    """However many cuts, one request at a time still goes."""
    clock = Clock()
    limiter = Limiter(100, None, clock)
    for _ in range(10):
        clock.now += 1
        limiter.overload(clock.now)
    assert limiter.limit == 1


def test_the_ceiling_caps_the_start_too() -> None:
    """legacy_max_concurrency below 8 is the limit from the first request."""
    assert Limiter(3, None, Clock()).limit == 3


def test_the_rate_cap_spaces_requests() -> None:
    """legacy_max_rate=10: one request per 0.1 s; the wait says how long until the next."""
    clock = Clock()
    limiter = Limiter(100, 10.0, clock)
    assert limiter.wait(clock.now) == 0.0
    assert abs(limiter.wait(clock.now) - 0.1) < 1e-9
    clock.now += 0.1
    assert limiter.wait(clock.now) == 0.0
    assert limiter.wait(clock.now) > 0


def test_no_rate_cap_never_waits() -> None:
    """Without legacy_max_rate nothing waits for the rate."""
    limiter = Limiter(100, None, Clock())
    assert all(limiter.wait(100.0) == 0.0 for _ in range(1000))


def test_a_job_is_the_1_0_1_json_body_keyed_by_the_record_id() -> None:
    """The 1.0.1 body drops ts (the server stamps its arrival) and is keyed by the record id."""
    job = legacy_job(encode(Record("rec-1", 1.5, "in", "out", model="m")))
    assert job is not None
    assert job.key == "rec-1"
    assert b'"ts"' not in job.body
    assert b'"input":"in"' in job.body


def test_a_job_has_only_the_fields_1_0_1_knows_and_scores_have_none() -> None:
    """Usage fields are left out of the 1.0.1 body, metadata is always there; a score gets no
    job: it is dropped (counted once as unsupported) and the records beside it are kept."""
    usage = encode(UsageRecord("rec-2", 1.5, "in", "out", input_tokens=3, cost=0.5))
    score = encode(Score("s-1", 1.5, "stars", 4.0, record_id="rec-2"))
    stats = Stats()
    (job,) = legacy_jobs([usage, score], stats)
    assert orjson.loads(job.body) == {"id": "rec-2", "input": "in", "output": "out", "metadata": {}}
    assert legacy_job(score) is None
    assert stats.dropped[DropReason.UNSUPPORTED] == 1
    assert sum(stats.dropped.values()) == 1


def test_an_answer_is_framed_by_its_content_length_and_kept_alive() -> None:
    """A 2xx with Content-Length is complete at its length; the connection stays reusable."""
    head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n"
    assert _parse(head + b"{}", eof=False) is None
    assert _parse(head + b'{"a"', eof=False) == (Answer(201, {}, b'{"a"'), True)
    assert _parse(head + b'{"a"}extra', eof=False) == (Answer(201, {}, b'{"a"'), False)


def test_an_error_answer_keeps_its_headers_and_a_close_is_honoured() -> None:
    """A 429's Retry-After reaches the caller; ``Connection: close`` or HTTP/1.0 ends reuse."""
    raw = b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nConnection: close\r\n"
    parsed = _parse(raw + b"Content-Length: 2\r\n\r\nno", eof=False)
    assert parsed is not None
    assert parsed[0].headers["retry-after"] == "3"
    assert parsed[1] is False
    assert _parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", eof=False) == (
        Answer(200, {}, b""), False,
    )  # fmt: skip


def test_chunked_and_close_delimited_answers_are_read_whole() -> None:
    """A chunked body (with trailers) is complete at its last chunk; one without length at EOF."""
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n"
    )
    assert _parse(chunked, eof=False) is None
    assert _parse(chunked + b"T: 1\r\n\r\n", eof=False) == (Answer(200, {}, b"abcde"), True)
    close_delimited = b"HTTP/1.1 500 Oops\r\n\r\nboom"
    assert _parse(close_delimited, eof=False) is None
    assert _parse(close_delimited, eof=True) == (Answer(500, {}, b"boom"), False)


def test_interim_1xx_heads_are_skipped_for_the_final_answer() -> None:
    """RFC 9110 15.2: 100 Continue (and 103) precede the answer; the final one is returned."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    final = b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
    assert _parse(interim, eof=False) is None
    assert _parse(interim + final, eof=False) == (
        Answer(503, {"retry-after": "1", "content-length": "0"}, b""),
        True,
    )


def test_204_and_304_have_no_body_without_a_length() -> None:
    """204 and 304 end at their head (RFC 9112 6.3); the connection stays reusable."""
    for status in (b"204 No Content", b"304 Not Modified"):
        parsed = _parse(b"HTTP/1.1 " + status + b"\r\nServer: x\r\n\r\n", eof=False)
        assert parsed is not None
        assert (parsed[0].status, parsed[0].body, parsed[1]) == (int(status[:3]), b"", True)


def test_an_unasked_101_is_malformed() -> None:
    """A 101 Switching Protocols to a request that asked for no upgrade is not an answer."""
    with pytest.raises(ValueError, match="101"):
        _parse(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", eof=False)
