"""Retry-After, in seconds or as an HTTP date, read with the clock fixed."""

from __future__ import annotations

import threading
import time
from email.utils import formatdate

import httpx
import pytest
from fakes import Counted

from banyan._config import Config
from banyan._exceptions import HTTPStatusError
from banyan._stats import DropReason, Stats
from banyan._transport import Transport, retry_after_seconds, status_error

NOW = 1_800_000_000.0


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wall-clock time stands still at NOW."""
    monkeypatch.setattr(time, "time", lambda: NOW)


def _date(offset: float) -> str:
    return formatdate(NOW + offset, usegmt=True)


TABLE = [
    ("120", 120.0),
    ("0.25", 0.25),
    ("0", 0.0),
    ("-5", 0.0),
    (_date(30), 30.0),
    (_date(3600), 3600.0),
    (_date(0), 0.0),
    (_date(-30), 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("soon", None),
    ("Wed, 99 Foo 2015", None),
    ("", None),
    (None, None),
]


@pytest.mark.usefixtures("fixed_clock")
@pytest.mark.parametrize(("header", "seconds"), TABLE)
def test_retry_after_header_values(header: str | None, seconds: float | None) -> None:
    """Seconds are taken as given, dates as the time left until them; the past, negative
    values and garbage never make a wait (0, or None for no usable header)."""
    assert retry_after_seconds(header) == seconds


@pytest.mark.usefixtures("fixed_clock")
@pytest.mark.parametrize(("header", "seconds"), [(_date(30), 30.0), ("7", 7.0), ("soon", None)])
def test_a_real_503_response_carries_its_retry_after(header: str, seconds: float | None) -> None:
    """The error built from a real httpx response holds the header's value in seconds."""
    response = httpx.Response(503, headers={"Retry-After": header}, text="busy")
    error = status_error(response)
    assert isinstance(error, HTTPStatusError)
    assert (error.status_code, error.retry_after) == (503, seconds)


def _answering(retry_after: str) -> tuple[Counted, Stats]:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": retry_after})

    config = Config(
        api_key="psk_unit",
        base_url="http://127.0.0.1:9",
        http_transport=httpx.MockTransport(busy),
        max_retries=0,
        max_retry_after=45.0,
    )
    delivery = Counted(config, Transport(config))
    return delivery, delivery._stats


@pytest.mark.usefixtures("fixed_clock")
@pytest.mark.parametrize(("offset", "floor"), [(30, 30.0), (-30, 0.0), (3600, 45.0)])
def test_a_retry_after_date_through_delivery_sets_the_next_send_floor(
    offset: float, floor: float
) -> None:
    """A 503 whose Retry-After is a date holds the next send until that date (never before
    now, never beyond max_retry_after), through the real transport and delivery."""
    delivery, stats = _answering(_date(offset))
    before = time.monotonic()
    assert not delivery([b"\xa1x"], None, threading.Event())
    after = time.monotonic()
    assert before + floor <= delivery.not_before <= after + floor
    assert stats.dropped[DropReason.RETRIES_EXHAUSTED] == 1
