"""HTTP to the Banyan server: one httpx client, errors translated at this boundary.

HTTP/2 is the default. For ``http://`` URLs that means h2c with prior
knowledge, which httpx only does with ``http1=False``; for ``https://`` it is
negotiated by ALPN. ``http2=False`` gives HTTP/1.1 keep-alive. No httpx, h2
or OS exception escapes this module: each becomes a BanyanError subclass.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import msgspec

from banyan import _fork
from banyan._exceptions import (
    AuthenticationError,
    BanyanError,
    ConfigurationError,
    ConnectError,
    HTTPStatusError,
    ProtocolError,
    RequestTimeout,
    TransportError,
)
from banyan._wire import API_KEY_HEADER, JSON, PROJECT_HEADER

if TYPE_CHECKING:
    import httpx

    from banyan._config import Config
    from banyan._fanout import Fanout

_USER_AGENT = "banyan-sdk/2"
_KEY_NAME = API_KEY_HEADER.lower().encode()


class Transport:
    """A thread-safe HTTP client bound to one server, API key and project."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._lock = threading.Lock()
        # One client per sending thread: httpcore's HTTP/2 connection mis-accounts
        # the flow-control window when two threads upload on it at once
        # ("Cannot send N bytes, flow control window is -M").
        # Keyed by thread, beside the thread itself: a thread that ended leaves its client,
        # closed at the next client creation (threads come and go in a pool).
        self._clients: dict[int, tuple[threading.Thread, httpx.Client]] = {}
        self._closed = False
        self._fanout: Fanout | None = None
        self.http_version: str | None = None
        _preload(config.http2)
        self._tls = tls_context(config.base_url.startswith("https://"), config.http2)

    @property
    def api_key(self) -> str:
        """The API key this transport sends."""
        return self._config.api_key

    def _headers(self) -> dict[str, str]:
        config = self._config
        headers = {API_KEY_HEADER: config.api_key, "User-Agent": _USER_AGENT}
        if config.project_id:
            headers[PROJECT_HEADER] = config.project_id
        return headers

    def fanout(self) -> Fanout | None:
        """The concurrent 1.0.1 sender; None where records go one at a time through httpx
        (a custom ``http_transport``, or an event loop running on the calling thread)."""
        import asyncio

        if self._config.http_transport is not None or asyncio._get_running_loop() is not None:
            return None
        with self._lock:
            if self._closed:
                raise TransportError("the client has been shut down")
            if self._fanout is None:
                from banyan._fanout import Fanout

                https = self._config.base_url.startswith("https://")
                # Never the batch client's context: httpcore offers h2 on it (review item 1).
                self._fanout = Fanout(self._config, tls_context(https, False), self._headers())
            return self._fanout

    def _new_client(self) -> httpx.Client:
        import httpx

        config = self._config
        headers = self._headers()
        # Enough connections for every sender under HTTP/1.1; one suffices for HTTP/2.
        limits = httpx.Limits(max_connections=config.max_in_flight + 2)
        timeout = httpx.Timeout(config.timeout, connect=min(config.timeout, 5.0))
        h2c = config.http2 and config.base_url.startswith("http://")
        return httpx.Client(
            base_url=config.base_url,
            headers=headers,
            timeout=timeout,
            limits=limits,
            http1=not h2c,
            http2=config.http2,
            verify=self._tls,
            transport=config.http_transport,
        )

    def client(self) -> httpx.Client:
        """The calling thread's client, created on first use."""
        thread = threading.current_thread()
        with self._lock:
            if self._closed:
                raise TransportError("the client has been shut down")
            entry = self._clients.get(thread.ident or 0)
            if entry is not None and entry[0] is thread:
                return entry[1]
            ended = [key for key, (owner, _) in self._clients.items() if not owner.is_alive()]
            stale = [self._clients.pop(key)[1] for key in ended]
            client = self._new_client()
            self._clients[thread.ident or 0] = (thread, client)
        for old in stale:
            _close_quietly(old)
        return client

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | memoryview | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; a BanyanError for transport failures and non-2xx."""
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if json is not None:
            kwargs["content"] = msgspec.json.encode(json)
            kwargs["headers"] = {"Content-Type": JSON, **(headers or {})}
        elif isinstance(content, memoryview):
            # httpcore's HTTP/2 sender cuts each frame off the front of the body and keeps
            # the rest (data[n:]): on bytes that copies the rest once per frame, on a
            # memoryview nothing. httpx streams an iterable body, so: one chunk, the view.
            kwargs["content"] = iter((content,))
            kwargs["headers"] = {"Content-Length": str(content.nbytes), **(headers or {})}
        elif content is not None:
            kwargs["content"] = content
        if timeout is not None:
            kwargs["timeout"] = timeout
        client = self.client()
        with translate(self, client):
            response = client.request(method, path, **kwargs)
            response.read()
        self.http_version = response.http_version
        if response.status_code >= 300:
            raise status_error(response)
        return response

    def reset(self, stale: httpx.Client) -> None:
        """Replace ``stale`` (a stalled or broken client) with a fresh one."""
        with self._lock:
            for key, (_, client) in list(self._clients.items()):
                if client is stale:
                    del self._clients[key]
        _close_quietly(stale)

    def forget(self) -> None:
        """Drop the client without closing it: a forked child must not touch
        the parent's connections (closing would send GOAWAY/close_notify)."""
        self._lock = threading.Lock()
        self._clients = {}
        if self._fanout is not None:
            _orphans.append(self._fanout)
            self._fanout = None

    def close(self) -> None:
        """Close the client; later requests raise TransportError."""
        with self._lock:
            clients = [client for _, client in self._clients.values()]
            self._clients, self._closed = {}, True
            fanout, self._fanout = self._fanout, None
        for client in clients:
            _close_quietly(client)
        if fanout is not None:
            with suppress(Exception):
                fanout.close()


#: A forked child's copies of its parent's loops and sockets: never used, and kept from the
#: garbage collector, which would close them (and warn) in the child.
_orphans: list[object] = []


def _preload(http2: bool) -> None:
    """Import here, on the configuring thread, what sending would import lazily.

    A fork while the flusher thread is mid-import leaves the child a
    half-initialised module for good ("partially initialized module 'httpx'
    has no attribute 'Limits'": every gunicorn --preload worker forked while
    the master sent its first batch lost all its records).
    """
    import encodings.idna  # noqa: F401 - socket.getaddrinfo's codec, loaded on first use

    import httpx  # noqa: F401

    if http2:
        import h2.utilities
        import httpcore._sync.http2  # noqa: F401 - httpcore imports it on the first h2 connection

        # The API key is sent never-indexed (RFC 7541 7.1.3), as h2 does for Authorization:
        # out of HPACK's dynamic table, and redacted in hpack's DEBUG log (#14 item 6).
        secure = h2.utilities._SECURE_HEADERS
        if _KEY_NAME not in secure:
            h2.utilities._SECURE_HEADERS = secure | {_KEY_NAME}


_TLS_LOCK = threading.Lock()
_tls_contexts: dict[tuple[bool, bool], ssl.SSLContext] = {}


def tls_context(https: bool, http2: bool) -> ssl.SSLContext:
    """The process's TLS context for this kind of client, built once, on first call.

    Building one takes ~50 ms of OpenSSL work (certifi's CA bundle) and holds
    OpenSSL's internal locks meanwhile: a child forked while another thread is
    in there hangs for good at its own first ``SSLContext`` (seen with
    gunicorn --preload forking while the flusher connected). So it happens on
    the configuring thread, under a lock held across every fork, and children
    inherit the finished context instead of building one. ``http://`` clients
    get a bare context: httpx insists on one but never uses it. Keyed by
    ``http2`` too, because httpcore sets the ALPN protocols on the context it
    is given at each connect. The HTTP/1.1 context offers only http/1.1 from
    the start, so that the 1.0.1 pool (``_h1pool``), which uses it too, is
    never given h2. Raises ConfigurationError when the CA certificates cannot
    be loaded.
    """
    with _TLS_LOCK:
        context = _tls_contexts.get((https, http2))
        if context is None:
            if https:
                context = _verifying_context()
            else:
                import ssl

                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if not http2:
                context.set_alpn_protocols(["http/1.1"])
            _tls_contexts[(https, http2)] = context
        return context


_fork.guard(_TLS_LOCK)


def _verifying_context() -> ssl.SSLContext:
    import httpx

    try:
        return httpx.create_ssl_context(trust_env=True)
    except OSError as exc:
        # httpx reads SSL_CERT_FILE, then SSL_CERT_DIR, then certifi's bundle.
        name = next((n for n in ("SSL_CERT_FILE", "SSL_CERT_DIR") if os.environ.get(n)), None)
        source = f"{name}={os.environ[name]!r}" if name else "certifi's CA bundle"
        raise ConfigurationError(f"cannot load TLS CA certificates from {source}: {exc}") from None


@contextmanager
def translate(transport: Transport, client: httpx.Client) -> Iterator[None]:
    """Turn httpx, h2 and OS errors into BanyanError subclasses."""
    import httpx

    try:
        yield
    except BanyanError:
        raise
    except httpx.TimeoutException as exc:
        # A stalled connection is not reused: the next attempt gets a new one.
        transport.reset(client)
        raise RequestTimeout(f"{type(exc).__name__}: {exc}") from None
    except httpx.ConnectError as exc:
        raise connect_error(exc) from None
    except (httpx.RemoteProtocolError, httpx.LocalProtocolError) as exc:
        transport.reset(client)
        raise ProtocolError(str(exc) or type(exc).__name__) from None
    except (httpx.HTTPError, OSError, RuntimeError) as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:
        # h2 raises its own exception types from inside httpcore.
        transport.reset(client)
        raise ProtocolError(f"{type(exc).__name__}: {exc}") from None


def connect_error(exc: BaseException) -> ConnectError:
    """The ConnectError for ``exc``, marked permanent when its cause is a certificate that
    fails verification or a host name that does not resolve."""
    error = ConnectError(str(exc) or type(exc).__name__)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError | socket.gaierror):
            error.permanent = True
            break
        cause = cause.__cause__ or cause.__context__
    return error


def status_error(response: httpx.Response) -> HTTPStatusError:
    """The BanyanError for a non-2xx response, with its Retry-After in seconds."""
    return error_for(
        response.status_code,
        response.headers.get("Retry-After"),
        response.content,
        response.reason_phrase,
    )


def error_for(
    status: int, retry_after: str | None, body: bytes, reason: str = ""
) -> HTTPStatusError:
    """The BanyanError for an answer of ``status`` with this Retry-After header and body."""
    kind = AuthenticationError if status in (401, 403) else HTTPStatusError
    return kind(status, _error_message(body, reason), retry_after_seconds(retry_after))


def _error_message(content: bytes, reason: str) -> str:
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return content[:200].decode("utf-8", "replace") or reason
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)[:200]
    return str(body)[:200]


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _close_quietly(client: httpx.Client) -> None:
    with suppress(Exception):
        client.close()
