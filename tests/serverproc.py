"""The reference server as a real process, for every test folder and for stress/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TEST_KEY = "psk_test_0123456789abcdef"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `banyan serve` subprocess and what a test needs to talk to it."""

    base_url: str
    api_key: str
    db: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30) as c:
            return c.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30) as c:
            return c.post(path, **kw)

    def stored_ids(self) -> list[str]:
        """Every record id the server has stored for the test key's project."""
        response = self.get("/api/v2/logs/ids")
        response.raise_for_status()
        return list(response.json()["ids"])

    def summary(self) -> dict[str, int]:
        """``{"stored": n, "duplicates": d, ...}`` for the test key's project."""
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


def start_server(tmp: Path, *args: str, port: int | None = None, db: Path | None = None) -> Server:
    """Start `banyan serve` on a free loopback port and wait until it answers."""
    port = port or free_port()
    db = db or tmp / "banyan.db"
    log = tmp / f"server-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "banyan",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(db),
        "--api-key",
        TEST_KEY,
        *args,
    ]
    scheme = "https" if "--tls-cert" in args else "http"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    server = Server(f"{scheme}://127.0.0.1:{port}", TEST_KEY, db, port, process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"banyan serve exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.base_url}/healthz", verify=False, timeout=1).is_success:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"banyan serve did not start within 30 s:\n{log.read_text()}")
