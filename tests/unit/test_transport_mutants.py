"""The transport's 1.0.1 fan-out sender across close and fork (mutants of _transport.py, #21)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable

import httpx
import pytest

from banyan import _transport
from banyan._config import build
from banyan._exceptions import TransportError
from banyan._fanout import Fanout
from banyan._transport import Transport

_close = Fanout.close


def _transport_to_nowhere() -> Transport:
    return Transport(build("psk_unit", "http://127.0.0.1:9", None))


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


def test_the_api_key_header_joins_h2s_never_indexed_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Preloading for HTTP/2 adds the API key's header to those h2 never indexes (RFC 7541
    7.1.3), keeping Authorization's."""
    import h2.utilities

    monkeypatch.setattr(h2.utilities, "_SECURE_HEADERS", frozenset({b"authorization"}))
    _transport._preload(True)
    assert {b"authorization", _transport._KEY_NAME} == h2.utilities._SECURE_HEADERS


def test_a_connect_error_is_named_by_its_text_else_its_type() -> None:
    """The ConnectError's message is the error's text, or its type's name when it has none."""
    assert str(_transport.connect_error(OSError("refused"))) == "refused"
    assert str(_transport.connect_error(OSError())) == "OSError"


def test_an_unresolvable_host_found_in_the_context_chain_is_permanent() -> None:
    """A name that does not resolve makes the error permanent even when it is only the
    context of the error raised (no ``from``)."""
    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror:
            raise httpx.ConnectError("wrapped")  # noqa: B904 - the context alone is the point
    except httpx.ConnectError as exc:
        wrapped = exc
    assert wrapped.__cause__ is None
    assert _transport.connect_error(wrapped).permanent


def test_only_the_http2_tls_context_may_offer_h2(monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTTP/1.1 context offers http/1.1 alone from the start (the 1.0.1 pool uses it);
    the HTTP/2 one is left for httpcore to set."""
    offered: dict[int, list[str]] = {}

    class Recording(ssl.SSLContext):
        def set_alpn_protocols(self, protocols: Iterable[str]) -> None:
            offered[id(self)] = list(protocols)
            super().set_alpn_protocols(protocols)

    monkeypatch.setattr(ssl, "SSLContext", Recording)
    monkeypatch.setattr(_transport, "_tls_contexts", {})
    plain, h2 = _transport.tls_context(False, False), _transport.tls_context(False, True)
    assert offered == {id(plain): ["http/1.1"]}
    assert h2 is not plain


@pytest.mark.parametrize("url", ["https://127.0.0.1:9", "http://127.0.0.1:9"])
def test_the_fanout_sender_gets_the_http11_context_of_its_scheme(url: str) -> None:
    """The 1.0.1 sender connects with the HTTP/1.1 TLS context (https only)."""
    transport = Transport(build("psk_unit", url, None))
    fanout = transport.fanout()
    assert fanout is not None
    https = url.startswith("https")
    assert fanout._pool._tls is (_transport.tls_context(True, False) if https else None)
    transport.close()
    with pytest.raises(TransportError, match=r"^the client has been shut down$"):
        transport.fanout()
