"""The transport's 1.0.1 fan-out sender across close and fork (mutants of _transport.py, #21)."""

from __future__ import annotations

import httpx
import pytest

from banyan import _transport
from banyan._config import build
from banyan._exceptions import TransportError
from banyan._fanout import Fanout
from banyan._transport import Transport

_close = Fanout.close


def _transport_to_nowhere() -> Transport:
    return Transport(build("psk_unit", None, "http://127.0.0.1:9"))


def test_the_fanout_sender_is_made_once_and_closed_with_the_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fanout() builds one Fanout and keeps it; close() closes it; after close it raises."""
    closed: list[Fanout] = []
    # A lambda, not closed.append: a builtin method does not bind as a method would.
    monkeypatch.setattr(Fanout, "close", lambda self: closed.append(self))  # noqa: PLW0108
    transport = _transport_to_nowhere()
    fanout = transport.fanout()
    assert isinstance(fanout, Fanout)
    assert transport.fanout() is fanout
    transport.close()
    assert closed == [fanout]
    with pytest.raises(TransportError):
        transport.fanout()
    _close(fanout)


def test_a_fanout_that_fails_to_close_does_not_fail_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """close() swallows the fan-out sender's own error on close."""

    def broken(self: Fanout) -> None:
        raise RuntimeError("loop already closed")

    monkeypatch.setattr(Fanout, "close", broken)
    transport = _transport_to_nowhere()
    fanout = transport.fanout()
    assert fanout is not None
    transport.close()
    _close(fanout)


def test_a_forked_child_leaves_the_parents_fanout_alone_and_makes_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """forget() keeps the parent's sender alive (orphaned, never closed) and the next
    fanout() makes a new one."""
    monkeypatch.setattr(_transport, "_orphans", [])
    transport = _transport_to_nowhere()
    parent = transport.fanout()
    assert isinstance(parent, Fanout)
    transport.forget()
    assert _transport._orphans == [parent]
    child = transport.fanout()
    assert isinstance(child, Fanout)
    assert child is not parent
    transport.forget()
    transport.forget()
    assert _transport._orphans == [parent, child]
    transport.close()
    for orphan in (parent, child):
        _close(orphan)


def test_a_custom_http_transport_has_no_fanout() -> None:
    """With http_transport set, records go one at a time through httpx: no fan-out."""
    mock = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    transport = Transport(build("psk_unit", None, None, http_transport=mock))
    assert transport.fanout() is None
    transport.close()


def test_an_error_body_that_is_not_utf8_is_still_the_message() -> None:
    """A non-JSON error body with bytes that are not UTF-8 becomes the message, replaced;
    an empty one leaves the reason (none by default)."""
    error = _transport.error_for(502, None, b"bad \xff gateway", "Bad Gateway")
    assert "bad \ufffd gateway" in str(error)
    assert str(_transport.error_for(502, None, b"", "Bad Gateway")) == "HTTP 502: Bad Gateway"
    assert str(_transport.error_for(502, None, b"")) == "HTTP 502: "
