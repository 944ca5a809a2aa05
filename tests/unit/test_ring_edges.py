"""The ring at its edges: exact thresholds, credit on and off, the bound after takes."""

from __future__ import annotations

import pytest

from banyan import _fork
from banyan._ring import Ring

pytestmark = pytest.mark.skipif(not _fork.WIPES, reason="credit needs a page wiped on fork")


def _ring(max_bytes: int = 10**6, records: int = 10**6, size: int = 10**6, **kw: bool) -> Ring:
    return Ring(max_bytes, records, size, lambda: None, **kw)


def test_a_ring_grants_credit_by_default_and_never_when_told_not_to() -> None:
    """fast defaults to True (a credit after the first push); fast=False grants none."""
    fast, slow = _ring(), _ring(fast=False)
    assert fast.push(b"x" * 10)
    assert slow.push(b"x" * 10)
    assert fast.credit[0] > 0
    assert slow.credit[0] == 0


def test_no_credit_is_granted_at_the_bound() -> None:
    """A ring filled exactly to max_bytes grants no credit, not even one byte."""
    ring = _ring(max_bytes=30)
    assert ring.push(b"x" * 20)
    assert ring.push(b"x" * 10)
    assert ring.credit[0] == 0


def test_wakes_fall_exactly_on_each_record_threshold() -> None:
    """With a record threshold of 5, push() wakes on the 5th and 10th records, not after."""
    at: list[int] = []
    ring = Ring(10**6, 5, 10**6, lambda: at.append(ring.pushed()), fast=False)
    for _ in range(12):
        ring.push(b"r")
    assert at == [5, 10]


def test_wakes_fall_exactly_on_each_byte_threshold() -> None:
    """With a byte threshold of 90, pushes of 30 bytes wake on the 3rd and 6th records."""
    at: list[int] = []
    ring = Ring(10**6, 10**6, 90, lambda: at.append(ring.pushed()), fast=False)
    for _ in range(7):
        ring.push(b"x" * 30)
    assert at == [3, 6]


@pytest.mark.parametrize(
    ("records", "size", "backlog"), [(2, 10, False), (3, 10, True), (1, 100, True)]
)
def test_backlog_is_either_threshold_reached(records: int, size: int, backlog: bool) -> None:
    """backlog() is true from exactly wake_records records or wake_bytes bytes held."""
    ring = _ring(records=3, size=100)
    for _ in range(records):
        ring.push(b"x" * size)
    assert ring.backlog() is backlog


def test_a_closed_ring_refuses_even_one_byte() -> None:
    """After close(), an empty ring refuses a 1-byte record."""
    ring = _ring()
    ring.close()
    assert not ring.push(b"x")
    assert len(ring) == 0


def test_taken_bytes_make_room_up_to_the_bound_again() -> None:
    """Bytes taken out no longer count: a full ring emptied takes max_bytes again."""
    ring = _ring(max_bytes=90)
    assert all(ring.push(b"x" * 30) for _ in range(3))
    assert len(ring.take(10, 10**6)[1]) == 3
    assert all(ring.push(b"x" * 30) for _ in range(3))
    assert not ring.push(b"x")
