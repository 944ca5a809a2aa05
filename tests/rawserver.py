"""A loopback HTTP/1.1 backend for the 1.0.1 endpoint that writes the answers it is given.

``POST /api/logs/prompt-usage`` gets the next of ``answers`` (raw bytes, the
last one repeated) and is counted; anything else gets 404. With ``tls`` it
serves HTTPS like a 1.0.1 service behind an h2 proxy, honouring ALPN
strictly: it offers h2 and http/1.1, and over h2 every request gets 404 (no
batch endpoint); bytes that are not HTTP/2 on an h2 connection end it.
granian would not do: it reads HTTP/1.1 on an h2 connection too, which hides
a client that offers h2 and then writes HTTP/1.1.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import trustme

CREATED = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"


class RawServer:
    """Serves on 127.0.0.1 in daemon threads; with ``tls``, ``ca_file`` is the CA to trust."""

    def __init__(self, tmp: Path, answers: tuple[bytes, ...] = (CREATED,), tls: bool = False):
        self._answers = answers
        self._context: ssl.SSLContext | None = None
        if tls:
            ca = trustme.CA()
            self.ca_file = tmp / "raw-ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ca.issue_cert("127.0.0.1").configure_cert(self._context)
            self._context.set_alpn_protocols(["h2", "http/1.1"])
        self._listener = socket.create_server(("127.0.0.1", 0))
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"
        #: The protocol chosen for each TLS connection, and the 1.0.1 requests answered.
        self.chosen: list[str | None] = []
        self.requests = 0
        #: Connections the client has not closed yet.
        self.open = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop listening and end every connection."""
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(raw)
            with self._lock:
                self.open += 1
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            self._serve_one(raw)
        finally:
            with self._lock:
                self.open -= 1

    def _serve_one(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            if self._context is None:
                self._h1(raw)
                return
            conn = self._context.wrap_socket(raw, server_side=True)
            self._conns.append(conn)
            self.chosen.append(conn.selected_alpn_protocol())
            if conn.selected_alpn_protocol() == "h2":
                self._h2(conn)
            else:
                self._h1(conn)

    def _h2(self, conn: ssl.SSLSocket) -> None:
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        while data := conn.recv(65536):
            try:
                events = h2conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                return
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    headers = [(":status", "404"), ("content-length", "0")]
                    h2conn.send_headers(event.stream_id, headers, end_stream=True)
            conn.sendall(h2conn.data_to_send())

    def _h1(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                if not (data := conn.recv(65536)):
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buffer) < length:
                buffer += conn.recv(65536)
            buffer = buffer[length:]
            if head.startswith(b"POST /api/logs/prompt-usage "):
                with self._lock:
                    self.requests += 1
                    answer = self._answers[min(self.requests, len(self._answers)) - 1]
                conn.sendall(answer)
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
