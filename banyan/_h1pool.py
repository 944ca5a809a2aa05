"""A small asyncio HTTP/1.1 keep-alive pool for the 1.0.1 single-record endpoint (issue #20).

One POST per record, many at once, each on a connection of its own (no
pipelining: an answer always belongs to the one request on its connection).
It is used instead of httpx's async client because it costs several times
less CPU per request (measured with ``benchmarks.legacy_throughput``:
httpx.AsyncClient reached fewer records/s at 8 concurrent requests than
httpx's sync client serially). Errors are translated here, as in
``_transport``; a :class:`~banyan.ConnectError` always means the request
was never sent, so that the caller may retry it without doubt.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from banyan._exceptions import ProtocolError, RequestTimeout, TransportError
from banyan._transport import connect_error

_HEAD_LIMIT = 64 * 1024
_BODY_LIMIT = 1 << 20


class Answer(NamedTuple):
    """A response: status, lower-cased headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Conn(NamedTuple):
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class H1Pool:
    """Keep-alive connections to one origin, opened on demand, reused while idle."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str], tls: ssl.SSLContext | None
    ) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = tls if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        authority = parts.netloc.rpartition("@")[2]
        lines = [f"Host: {authority}"] + [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._idle: list[_Conn] = []

    async def post(
        self, path: str, body: bytes, headers: Mapping[str, str], timeout: float, connect: float
    ) -> Answer:
        """POST ``body``; raises ConnectError (never sent), RequestTimeout or ProtocolError."""
        conn = await self._acquire(min(timeout, connect))
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = b"".join((
            f"POST {self._prefix}{path} HTTP/1.1\r\n".encode("latin-1"), self._head,
            f"{extra}Content-Length: {len(body)}\r\n\r\n".encode("latin-1"), body,
        ))  # fmt: skip
        expired: list[bool] = []
        timer = asyncio.get_running_loop().call_later(
            timeout, _expire, asyncio.current_task(), expired
        )
        try:
            conn.writer.write(request)
            answer, reusable = await _read_answer(conn.reader)
        except BaseException as exc:
            conn.writer.close()
            if expired and isinstance(exc, asyncio.CancelledError):
                exc = asyncio.TimeoutError()
            raise _translated(exc) from None
        finally:
            timer.cancel()
        if reusable:
            self._idle.append(conn)
        else:
            conn.writer.close()
        return answer

    async def _acquire(self, timeout: float) -> _Conn:
        while self._idle:
            conn = self._idle.pop()
            # The server closed it while idle (keep-alive timeout): sending on it would
            # leave the outcome in doubt, so it is never used.
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.writer.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self._host, self._port, ssl=self._tls, limit=_HEAD_LIMIT,
                    server_hostname=self._host if self._tls else None,
                ),
                timeout,
            )  # fmt: skip
        except (OSError, asyncio.TimeoutError) as exc:
            raise connect_error(exc) from None
        return _Conn(reader, writer)

    def close(self) -> None:
        """Close the idle connections (those in use close when their request ends)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.writer.close()


def _expire(task: asyncio.Task[object] | None, expired: list[bool]) -> None:
    # asyncio.wait_for would run the read as a task of its own: a timer is cheaper.
    expired.append(True)
    if task is not None:
        task.cancel()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if headers.get("transfer-encoding", "").lower().endswith("chunked"):
        body = await _chunked(reader)
    elif length is not None:
        body = await reader.readexactly(int(length))
    else:
        return Answer(status, headers, await reader.read(_BODY_LIMIT)), False
    closing = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
    return Answer(status, headers, body), not closing


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            # Trailer lines, if any, up to the empty line.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _translated(exc: BaseException) -> BaseException:
    if isinstance(exc, asyncio.TimeoutError):
        return RequestTimeout("no answer within the timeout")
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        return exc
    if isinstance(exc, asyncio.IncompleteReadError | asyncio.LimitOverrunError | ValueError):
        return ProtocolError(f"malformed or incomplete answer: {type(exc).__name__}")
    if isinstance(exc, OSError):
        return TransportError(f"{type(exc).__name__}: {exc}")
    return ProtocolError(f"{type(exc).__name__}: {exc}")
