"""The transport's requests, answers and clients, through httpx with a mock transport."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from typing import Any

import httpx
import msgspec
import pytest

from banyan import _transport
from banyan._config import Config
from banyan._exceptions import (
    AuthenticationError,
    ConfigurationError,
    HTTPStatusError,
    ProtocolError,
    RequestTimeout,
    TransportError,
)
from banyan._transport import Transport, status_error, tls_context


def _transport_to(
    answer: httpx.Response | None = None, **options: Any
) -> tuple[Transport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return answer if answer is not None else httpx.Response(200, json={})

    options.setdefault("base_url", "http://127.0.0.1:9")
    config = Config(api_key="psk_unit", http_transport=httpx.MockTransport(handle), **options)
    return Transport(config), seen


def test_json_is_encoded_and_typed_beside_the_callers_headers() -> None:
    """json= is sent MessagePack-free as JSON, typed application/json, other headers kept."""
    transport, seen = _transport_to(project_id="prj_1")
    transport.request("POST", "/p", json={"a": 1}, headers={"X-Extra": "yes"})
    [request] = seen
    assert (request.method, request.url.path, request.content) == ("POST", "/p", b'{"a":1}')
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Extra"] == "yes"
    assert request.headers["X-API-Key"] == "psk_unit"
    assert request.headers["X-Project-Id"] == "prj_1"
    assert request.headers["User-Agent"] == "banyan-sdk/2"


def test_a_memoryview_body_is_sent_whole_with_its_length() -> None:
    """A memoryview is streamed as one chunk with Content-Length; bytes go as they are."""
    transport, seen = _transport_to()
    transport.request("POST", "/v", content=memoryview(b"abcdef")[1:4], headers={"X-K": "1"})
    transport.request("POST", "/b", content=b"raw")
    view, raw = seen
    assert (view.content, view.headers["Content-Length"], view.headers["X-K"]) == (b"bcd", "3", "1")
    assert raw.content == b"raw"


def test_the_timeout_is_the_configured_one_unless_given() -> None:
    """Requests time out after `timeout` (connect after at most 5 s), or after the given one."""
    transport, seen = _transport_to(timeout=12.0)
    transport.request("GET", "/default")
    transport.request("GET", "/given", timeout=0.75)
    default, given = (request.extensions["timeout"] for request in seen)
    assert default == {"connect": 5.0, "read": 12.0, "write": 12.0, "pool": 12.0}
    assert given == dict.fromkeys(("connect", "read", "write", "pool"), 0.75)


@pytest.mark.parametrize("code", [200, 204, 299])
def test_a_2xx_is_returned_and_its_http_version_kept(code: int) -> None:
    """2xx answers are returned; the transport remembers their HTTP version."""
    transport, _ = _transport_to(httpx.Response(code, json={"ok": True}))
    assert transport.http_version is None
    assert transport.request("GET", "/").status_code == code
    assert transport.http_version == "HTTP/1.1"


@pytest.mark.parametrize(
    ("code", "kind"),
    [(300, HTTPStatusError), (400, HTTPStatusError), (401, AuthenticationError),
     (402, HTTPStatusError), (403, AuthenticationError), (404, HTTPStatusError)],
)  # fmt: skip
def test_anything_but_2xx_raises_its_status_error(code: int, kind: type[Exception]) -> None:
    """3xx, 4xx and 5xx raise; 401 and 403 as AuthenticationError."""
    transport, _ = _transport_to(httpx.Response(code, json={"error": "no"}))
    with pytest.raises(HTTPStatusError) as raised:
        transport.request("GET", "/")
    assert type(raised.value) is kind
    assert (raised.value.status_code, str(raised.value)) == (code, f"HTTP {code}: no")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(500, json={"error": "broke", "message": "m"}), "broke"),
        (httpx.Response(500, json={"message": "m"}), "m"),
        (httpx.Response(500, json={"other": 1}), "{'other': 1}"),
        (httpx.Response(500, json={"error": "e" * 300}), "e" * 200),
        (httpx.Response(500, json=["x" * 300]), str(["x" * 300])[:200]),
        (httpx.Response(500, text="t" * 300), "t" * 200),
        (httpx.Response(503, text=""), "Service Unavailable"),
    ],
)
def test_the_error_message_comes_from_the_body(answer: httpx.Response, message: str) -> None:
    """The message is the JSON error, else its message, else the body (200 characters at
    most); a body that is not JSON is taken as text, an empty one as the reason phrase."""
    assert str(status_error(answer)) == f"HTTP {answer.status_code}: {message}"


def test_a_closed_transport_refuses_requests() -> None:
    """After close() every request raises TransportError."""
    transport, seen = _transport_to()
    transport.close()
    with pytest.raises(TransportError) as raised:
        transport.request("GET", "/")
    assert str(raised.value) == "the client has been shut down"
    assert seen == []


def test_close_survives_a_client_that_fails_to_close() -> None:
    """A client whose close raises does not stop close()."""

    class Stubborn(httpx.MockTransport):
        def close(self) -> None:
            raise RuntimeError("will not close")

    config = Config(api_key="psk_unit", base_url="http://127.0.0.1:9",
                    http_transport=Stubborn(lambda request: httpx.Response(200)))  # fmt: skip
    transport = Transport(config)
    transport.client()
    transport.close()


def test_reset_replaces_and_closes_a_stale_client() -> None:
    """reset(client) closes that client; the next request gets a new one."""
    transport, _ = _transport_to()
    stale = transport.client()
    transport.reset(stale)
    assert stale.is_closed
    assert transport.client() is not stale


def test_forget_drops_the_client_without_closing_it() -> None:
    """forget() (a forked child) leaves the parent's client open and makes a new one."""
    transport, _ = _transport_to()
    parent = transport.client()
    transport.forget()
    assert transport.client() is not parent
    assert not parent.is_closed
    transport.request("GET", "/")


@pytest.mark.parametrize(
    ("url", "http2"),
    [("http://127.0.0.1:9", True), ("http://127.0.0.1:9", False), ("https://127.0.0.1:9", True)],
)
def test_network_clients_get_the_pool_settings(url: str, http2: bool) -> None:
    """Without a custom transport: h2c with prior knowledge for http:// (HTTP/1.1 when
    http2=False), max_in_flight + 2 connections, the process's TLS context."""
    transport = Transport(Config(api_key="psk_unit", base_url=url, http2=http2, max_in_flight=3))
    pool = transport.client()._transport._pool  # type: ignore[attr-defined]
    h2c = http2 and url.startswith("http://")
    assert (pool._http1, pool._http2, pool._max_connections) == (not h2c, http2, 5)
    assert pool._ssl_context is tls_context(url.startswith("https://"), http2)
    assert transport._tls is pool._ssl_context
    transport.close()


def test_tls_contexts_are_built_once_per_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """One SSLContext per (https, http2), built on first use and then shared."""
    monkeypatch.setattr(_transport, "_tls_contexts", {})
    for https in (False, True):
        for http2 in (False, True):
            context = tls_context(https, http2)
            assert isinstance(context, ssl.SSLContext)
            assert tls_context(https, http2) is context
    assert tls_context(True, True) is not tls_context(True, False)
    assert tls_context(True, True).verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("env", "source"),
    [
        ({}, "certifi's CA bundle"),
        ({"SSL_CERT_DIR": "/nowhere/d"}, "SSL_CERT_DIR='/nowhere/d'"),
        (
            {"SSL_CERT_FILE": "/nowhere/f", "SSL_CERT_DIR": "/nowhere/d"},
            "SSL_CERT_FILE='/nowhere/f'",
        ),
    ],
)
def test_unloadable_ca_certificates_name_their_source(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], source: str
) -> None:
    """When the CA certificates cannot be loaded the error names where they came from."""
    asked: list[bool] = []

    def refuse(trust_env: bool) -> ssl.SSLContext:
        asked.append(trust_env)
        raise OSError("no such file")

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(httpx, "create_ssl_context", refuse)
    with pytest.raises(ConfigurationError) as raised:
        _transport._verifying_context()
    assert str(raised.value) == f"cannot load TLS CA certificates from {source}: no such file"
    assert asked == [True]


@pytest.mark.parametrize("http2", [True, False])
def test_a_transport_preloads_what_its_http_version_needs(
    monkeypatch: pytest.MonkeyPatch, http2: bool
) -> None:
    """A transport preloads, on the configuring thread, the code its HTTP version needs."""
    asked: list[bool] = []
    monkeypatch.setattr(_transport, "_preload", asked.append)
    Transport(Config(api_key="psk_unit", base_url="http://127.0.0.1:9", http2=http2))
    assert asked == [http2]


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (httpx.ReadTimeout("slow"), RequestTimeout),
        (httpx.RemoteProtocolError("bad"), ProtocolError),
    ],
)
def test_a_stalled_or_broken_connection_is_not_reused(raised: Exception, kind: type) -> None:
    """A timeout or protocol error is translated and its client replaced (closed)."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    config = Config(api_key="psk_unit", base_url="http://127.0.0.1:9",
                    http_transport=httpx.MockTransport(fail))  # fmt: skip
    transport = Transport(config)
    first = transport.client()
    with pytest.raises(kind):
        transport.request("GET", "/")
    assert first.is_closed
    assert transport.client() is not first


def test_a_transport_preloads_the_http2_code_before_any_fork() -> None:
    """Building an http2 transport imports httpcore's HTTP/2 module on the spot."""
    code = (
        "import sys; from banyan._config import Config; from banyan._transport import Transport;"
        "Transport(Config(api_key='psk_unit', base_url='http://127.0.0.1:9'));"
        "print('httpcore._sync.http2' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, env=dict(os.environ))  # fmt: skip
    assert done.stdout.strip() == "True", done.stderr


def test_json_bodies_round_trip() -> None:
    """The JSON sent decodes to the object given."""
    transport, seen = _transport_to()
    transport.request("POST", "/j", json={"k": [1, "two", None]})
    assert msgspec.json.decode(seen[0].content) == {"k": [1, "two", None]}
