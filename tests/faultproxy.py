"""A small fault-injecting HTTP/1.1 proxy in front of the reference server.

Tests queue faults for the next requests (optionally only for one path);
everything else is forwarded unchanged. Loopback only.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Fault:
    """What to do to one request: answer ``status``, ``reset``, ``stall``, ``hold`` it
    (forward it once ``release`` is set), or ``lose`` the answer (forward it, then reset)."""

    kind: str
    status: int = 500
    retry_after: str | None = None
    path: str | None = None


@dataclass
class FaultProxy:
    """Forwards to ``target`` (which may change while it runs: a load balancer moving a
    client to another instance); ``faults`` are consumed in order by matching requests."""

    target: str
    faults: list[Fault] = field(default_factory=list)
    always: list[Fault] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    #: Answers of status 200 that a ``lose`` fault kept from the client.
    lost: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def push(self, kind: str, times: int = 1, **kw: object) -> None:
        """Apply a fault to the next ``times`` requests (matching ``path`` if given)."""
        with self.lock:
            self.faults.extend(Fault(kind, **kw) for _ in range(times))  # type: ignore[arg-type]

    def next_fault(self, path: str) -> Fault | None:
        with self.lock:
            self.seen.append(path)
            for fault in self.always:
                if fault.path in (None, path):
                    return fault
            for index, fault in enumerate(self.faults):
                if fault.path in (None, path):
                    return self.faults.pop(index)
        return None


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle each answer waits ~40 ms for an ACK.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = proxy.next_fault(self.path.split("?")[0])
            if fault is not None and fault.kind == "hold":
                proxy.release.wait(60)
                fault = None
            if fault is not None and fault.kind == "stall":
                proxy.release.wait(60)
                self.close_connection = True
                return
            if fault is not None and fault.kind == "lose":
                proxy.lost += self._forward(body, answer=False) == 200
            if fault is not None and fault.kind in ("reset", "lose"):
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.connection.close()
                self.close_connection = True
                return
            if fault is not None:
                self._answer(fault.status, b'{"error": "injected"}', fault.retry_after)
                return
            self._forward(body)

        def _answer(self, status: int, body: bytes, retry_after: str | None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, body: bytes, *, answer: bool = True) -> int:
            parts = urlsplit(proxy.target)
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            if not answer:
                return response.status
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return response.status

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    return Handler


@contextmanager
def running(target: str) -> Iterator[FaultProxy]:
    """A FaultProxy on a free 127.0.0.1 port for the duration of the block."""
    proxy = FaultProxy(target)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="faultproxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release.set()
        server.shutdown()
        server.server_close()
