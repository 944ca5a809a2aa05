"""A small asyncio HTTP/1.1 keep-alive pool for the 1.0.1 single-record endpoint (issue #20).

One POST per record, many at once, each on a connection of its own (no
pipelining: an answer always belongs to the one request on its connection).
It is used instead of httpx's async client because it costs several times
less CPU per request (measured with ``benchmarks.legacy_throughput``:
httpx.AsyncClient reached fewer records/s at 8 concurrent requests than
httpx's sync client serially). A request is a future answered by the
connection's protocol, not a task: the request head is built once, and each
request is one ``write`` of it with the record's key, length and body.
Errors are translated here, as in ``_transport``; a :class:`~banyan.ConnectError`
always means the request was never sent, so that the caller may retry it
without doubt.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from banyan._exceptions import (
    BanyanError,
    ConnectError,
    ProtocolError,
    RequestTimeout,
    TransportError,
)
from banyan._transport import connect_error

_HEAD_LIMIT = 64 * 1024
_BODY_LIMIT = 1 << 20
#: Answers that end at their head, whatever their headers say (RFC 9112 6.3).
_BODILESS = frozenset({204, 304})


class Answer(NamedTuple):
    """A response: status, lower-cased headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes


class H1Pool:
    """Keep-alive connections to one endpoint, opened on demand, reused while idle."""

    def __init__(
        self,
        base_url: str,
        path: str,
        headers: Mapping[str, str],
        key_header: str,
        tls: ssl.SSLContext | None,
    ) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = tls if parts.scheme == "https" else None
        authority = parts.netloc.rpartition("@")[2]
        lines = [f"POST {parts.path.rstrip('/')}{path} HTTP/1.1", f"Host: {authority}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + f"\r\n{key_header}: ").encode("latin-1")
        self._idle: list[_Conn] = []
        self._busy: set[_Conn] = set()

    def send(self, body: bytes, key: str, timeout: float, connect: float) -> asyncio.Future[Answer]:
        """POST ``body``; the future fails with ConnectError (never sent), RequestTimeout or
        ProtocolError/TransportError. Cancelling it closes its connection."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Answer] = loop.create_future()
        request = b"%s%s\r\nContent-Length: %d\r\n\r\n%s" % (
            self._head, key.encode("latin-1"), len(body), body,
        )  # fmt: skip
        while self._idle:
            conn = self._idle.pop()
            # The server closed it while idle (keep-alive timeout): sending on it would
            # leave the outcome in doubt, so it is never used.
            if conn.open:
                conn.begin(answer, request, timeout)
                return answer
            conn.close()
        task = loop.create_task(self._open(answer, request, timeout, min(timeout, connect)))
        answer.add_done_callback(lambda _: task.cancel())
        return answer

    async def _open(
        self, answer: asyncio.Future[Answer], request: bytes, timeout: float, connect: float
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            # Python 3.10 has no asyncio.timeout; only a new connection pays for wait_for.
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Conn(self), self._host, self._port, ssl=self._tls,
                    server_hostname=self._host if self._tls else None,
                ),
                connect,
            )  # fmt: skip
        except (OSError, asyncio.TimeoutError) as exc:
            if not answer.done():
                answer.set_exception(connect_error(exc))
            return
        if _chose_h2(conn):
            conn.close()
            if not answer.done():
                answer.set_exception(ConnectError("the server chose HTTP/2 by ALPN"))
        elif answer.done():
            self.release(conn, reusable=True)
        else:
            conn.begin(answer, request, max(0.001, timeout - (loop.time() - started)))

    def release(self, conn: _Conn, reusable: bool) -> None:
        """``conn`` has no request any more: keep it idle or close it."""
        self._busy.discard(conn)
        if reusable and conn.open:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Abort every connection (a request still on one fails); the loop's next turn
        releases their sockets. Not a TLS close_notify: that would wait for the peer's."""
        conns, self._idle = [*self._idle, *self._busy], []
        for conn in conns:
            conn.close(abort=True)


def _chose_h2(conn: _Conn) -> bool:
    """Whether TLS negotiated h2 though only http/1.1 was offered: nothing is sent on it."""
    assert conn.transport is not None
    tls = conn.transport.get_extra_info("ssl_object")
    return tls is not None and tls.selected_alpn_protocol() == "h2"


class _Conn(asyncio.Protocol):
    """One connection: at most one request at a time, answered into its future."""

    def __init__(self, pool: H1Pool) -> None:
        self.pool = pool
        self.open = True
        self.buffer = b""
        self.answer: asyncio.Future[Answer] | None = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def begin(self, answer: asyncio.Future[Answer], request: bytes, timeout: float) -> None:
        assert self.transport is not None
        self.pool._busy.add(self)
        self.answer = answer
        loop = answer.get_loop()
        self.timer = loop.call_later(timeout, self._expire)
        answer.add_done_callback(self._cancelled)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.answer is None:
            self.close()
            return
        try:
            parsed = _parse(self.buffer, eof=False)
        except (ValueError, IndexError) as exc:
            self._end(ProtocolError(f"malformed answer: {type(exc).__name__}"))
            return
        if parsed is not None:
            self._end(*parsed)

    def eof_received(self) -> bool:
        self.open = False
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.answer is None:
            return
        if exc is not None:
            self._end(TransportError(f"{type(exc).__name__}: {exc}"))
            return
        try:
            parsed = _parse(self.buffer, eof=True)
        except (ValueError, IndexError):
            parsed = None
        self._end(*(parsed or (ProtocolError("incomplete answer: the connection closed"),)))

    def _end(self, result: Answer | BanyanError, reusable: bool = False) -> None:
        answer, self.answer, self.buffer = self.answer, None, b""
        if self.timer is not None:
            self.timer.cancel()
        if answer is not None and not answer.done():
            if isinstance(result, Answer):
                answer.set_result(result)
            else:
                answer.set_exception(result)
        self.pool.release(self, reusable)

    def _expire(self) -> None:
        self._end(RequestTimeout("no answer within the timeout"))

    def _cancelled(self, answer: asyncio.Future[Answer]) -> None:
        if answer.cancelled() and self.answer is answer:
            self.answer = None
            self.pool.release(self, reusable=False)

    def close(self, abort: bool = False) -> None:
        self.open = False
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            (self.transport.abort if abort else self.transport.close)()
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            answer.set_exception(TransportError("the connection was closed"))


def _parse(buffer: bytes, eof: bool) -> tuple[Answer, bool] | None:
    """A complete answer at the start of ``buffer`` and whether the connection is reusable.

    Only the fields that frame the answer are looked up; the other headers are
    read for an error (its Retry-After), not for the common 2xx.
    """
    status = 100
    # Interim answers (100 Continue, 103 Early Hints) precede the final one (RFC 9110 15.2).
    while status < 200:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _HEAD_LIMIT:
                raise ValueError("head too long")
            return None
        head = buffer[: end + 2].lower()
        status = int(head[9:12])
        if status == 101:
            raise ValueError("101 to a request that asked for no upgrade")
        buffer = buffer[end + 4 :]
    rest = buffer
    length = _field(head, b"\r\ncontent-length:")
    if status in _BODILESS:
        body, used = b"", 0
    elif _field(head, b"\r\ntransfer-encoding:").endswith(b"chunked"):
        chunked = _dechunk(rest)
        if chunked is None:
            return None
        body, used = chunked
    elif length:
        used = int(length)
        if len(rest) < used:
            if used > _BODY_LIMIT:
                raise ValueError("body too long")
            return None
        body = rest[:used]
    elif eof:
        return Answer(status, _headers(head), rest[:_BODY_LIMIT]), False
    else:
        return None
    closing = _field(head, b"\r\nconnection:") == b"close" or head.startswith(b"http/1.0")
    headers = _headers(head) if status >= 300 else {}
    return Answer(status, headers, body), not closing and used == len(rest)


def _field(head: bytes, name: bytes) -> bytes:
    """The value of the header ``name`` (lower case, with its CRLF and colon) in ``head``."""
    at = head.find(name)
    if at < 0:
        return b""
    at += len(name)
    return head[at : head.find(b"\r\n", at)].strip()


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = (line.partition(":") for line in lines if line)
    return {name.strip(): value.strip() for name, _, value in pairs}


def _dechunk(data: bytes) -> tuple[bytes, int] | None:
    """The body of a complete chunked payload and the bytes it took, or None if incomplete."""
    parts: list[bytes] = []
    at = 0
    while (eol := data.find(b"\r\n", at)) >= 0:
        size = int(data[at:eol].split(b";")[0], 16)
        at = eol + 2
        if size == 0:
            # Trailer lines, if any, up to the empty line.
            while (eol := data.find(b"\r\n", at)) >= 0:
                line, at = data[at:eol], eol + 2
                if not line:
                    return b"".join(parts), at
            return None
        if len(data) < at + size + 2:
            return None
        parts.append(data[at : at + size])
        at += size + 2
    return None
