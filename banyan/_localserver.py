"""``banyan serve`` as a subprocess on a free loopback port, for the demo, tests and benchmarks.

Client side only: the server runs as ``sys.executable -m banyan serve`` and
``banyan.server`` is never imported here.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

LOCAL_KEY = "psk_test_0123456789abcdef"
_START_TIMEOUT = 30.0
#: Where a server on PostgreSQL keeps its pages' signing secret (banyan.server._app).
SECRET_DIR_ENV = "BANYAN_SECRET_DIR"
#: Fresh ports tried by a first start whose port another process took before it bound it.
FRESH_PORTS = 3
#: How long a start on a given port (a restart: its clients hold the URL) waits for it.
PORT_WAIT = 10.0
_PORT_PAUSE = 0.25
_T = TypeVar("_T")


class PortTaken(RuntimeError):
    """A server exited at start because another process holds its port."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int) -> bool:
    """Whether another socket holds 127.0.0.1:``port``, so that a server cannot bind it."""
    with socket.socket() as sock:
        # As servers bind: a connection of an earlier server in TIME_WAIT is no obstacle.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def on_a_free_port(launch: Callable[[int], _T], port: int | None = None) -> _T:
    """``launch(port)``, again while it raises :class:`PortTaken`.

    free_port() cannot reserve its port: anyone may take it before the server
    binds it. Without ``port`` each try gets a fresh one (FRESH_PORTS tries);
    with it (a restart) the same port is tried again for PORT_WAIT seconds.
    """
    deadline = time.monotonic() + PORT_WAIT
    for _ in range(FRESH_PORTS - 1 if port is None else int(PORT_WAIT / _PORT_PAUSE)):
        try:
            return launch(port or free_port())
        except PortTaken:
            if port is not None:
                if time.monotonic() > deadline:
                    break
                time.sleep(_PORT_PAUSE)
    return launch(port or free_port())


@dataclass
class LocalServer:
    """A running ``banyan serve`` subprocess and what a client needs to talk to it."""

    base_url: str
    api_key: str
    db: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)
    #: What ``--db`` was given: the SQLite file ``db``, or a postgresql:// URL.
    database: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """The API key header for requests made by hand."""
        return {"X-API-Key": self.api_key}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        """``GET path`` with the API key."""
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30) as c:
            return c.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        """``POST path`` with the API key."""
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30) as c:
            return c.post(path, **kw)

    def stored_ids(self) -> list[str]:
        """Every record id the server has stored for the key's project."""
        response = self.get("/api/v2/logs/ids")
        response.raise_for_status()
        return list(response.json()["ids"])

    def summary(self) -> dict[str, int]:
        """``{"stored": n, "duplicates": d, ...}`` for the key's project."""
        response = self.get("/api/v2/logs/summary")
        response.raise_for_status()
        return dict(response.json())

    def stop(self, sig: int | None = None) -> int:
        """Stop the server (SIGTERM unless told otherwise); returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig or 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)


def start(
    tmp: Path,
    *args: str,
    port: int | None = None,
    db: Path | str | None = None,
    api_key: str = LOCAL_KEY,
    key_arg: bool = True,
    env: dict[str, str] | None = None,
) -> LocalServer:
    """Start ``banyan serve`` on a free loopback port and wait until ``/healthz`` answers.

    ``args`` go to ``banyan serve`` as they are; the database (a path or a
    postgresql:// URL) defaults to ``tmp/banyan.db``, ``env`` adds to the
    environment, and the server's output goes to ``tmp/server-<port>.log``. The
    pages' signing secret of a PostgreSQL server is kept in ``tmp`` too.
    ``key_arg=False`` leaves out ``--api-key``: ``args`` or the environment hand
    the server ``api_key`` another way.
    Raises RuntimeError, with that log, when the server exits or does not
    answer within 30 s; a server that exits because its port was taken is
    started again (see :func:`on_a_free_port`).
    """
    launch = functools.partial(_start_on, tmp, args, db=db, api_key=api_key, key_arg=key_arg,
                               env=env)  # fmt: skip
    return on_a_free_port(launch, port)


def _start_on(
    tmp: Path,
    args: tuple[str, ...],
    port: int,
    *,
    db: Path | str | None,
    api_key: str,
    key_arg: bool,
    env: dict[str, str] | None,
) -> LocalServer:
    database = str(db or tmp / "banyan.db")
    log = tmp / f"server-{port}.log"
    cmd = [sys.executable, "-m", "banyan", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--db", database, *(["--api-key", api_key] if key_arg else []), *args]  # fmt: skip
    scheme = "https" if "--tls-cert" in args else "http"
    environ = {**os.environ, SECRET_DIR_ENV: str(tmp), **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=environ)
    sqlite = Path(database) if "://" not in database else tmp / "no-sqlite-file"
    server = LocalServer(f"{scheme}://127.0.0.1:{port}", api_key, sqlite, port, process, log,
                         database=database)  # fmt: skip
    _wait_healthy(server)
    return server


def _wait_healthy(server: LocalServer) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            error = PortTaken if port_taken(server.port) else RuntimeError
            raise error(f"banyan serve exited early:\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.base_url}/healthz", verify=False, timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"banyan serve did not start within 30 s:\n{server.log.read_text()}")
