"""Retry backoff: exponential from retry_delay, capped at max_retry_delay, jittered down."""

from __future__ import annotations

import pytest
from fakes import Counted, FakeTransport, Jitter, Waits, status

from banyan._config import Config


def _retrying(failures: int, pick: float = 1.0, **options: float) -> tuple[Counted, Jitter, Waits]:
    config = Config(api_key="psk_unit", base_url="http://127.0.0.1:9", **options)  # type: ignore[arg-type]
    fake = FakeTransport([status(503)] * failures)
    delivery = Counted(config, fake)
    jitter = Jitter(pick)
    delivery._random = jitter  # type: ignore[assignment]
    waits = Waits()
    assert delivery([b"\xa1x"], None, waits)
    return delivery, jitter, waits


def test_backoff_doubles_from_retry_delay_up_to_max_retry_delay() -> None:
    """Waits between attempts double from retry_delay and stop growing at max_retry_delay."""
    _, _, waits = _retrying(6, retry_delay=0.1, max_retry_delay=1.0, max_retries=6)
    assert waits.delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_jitter_scales_each_wait_between_half_and_whole() -> None:
    """Each wait is the exponential step times a jitter drawn from [0.5, 1.0]."""
    _, jitter, waits = _retrying(3, 0.0, retry_delay=2.0, max_retry_delay=60.0, max_retries=3)
    assert jitter.asked == [(0.5, 1.0)] * 3
    assert waits.delays == pytest.approx([1.0, 2.0, 4.0])


def test_backoff_counts_retries_and_stops_after_max_retries() -> None:
    """max_retries failures are each followed by one wait; one more gives the batch up."""
    delivery, _, waits = _retrying(2, retry_delay=0.5, max_retries=2)
    assert len(waits.delays) == 2
    assert delivery._stats.retries == 2
