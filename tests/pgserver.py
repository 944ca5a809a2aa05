"""A throwaway PostgreSQL server: initdb in a temporary directory, postgres on loopback.

PostgreSQL refuses to run as root, so both run as the ``postgres`` user (via
runuser) when the tests run as root. The Debian package is installed when
``initdb`` is missing and apt-get is at hand.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from banyan._localserver import PortTaken, free_port, on_a_free_port, port_taken

USER = "banyan"
#: Given in every URL (the server trusts loopback): it must never be printed.
PASSWORD = "pg-secret-4f1c"


class PgUnavailable(RuntimeError):
    """PostgreSQL could not be installed or started here."""


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def bin_dir() -> Path:
    """Where initdb and postgres are, installing Debian's postgresql package if needed."""
    found = _bin_dir()
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300,
                       check=False)  # fmt: skip
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], env=env,
                       capture_output=True, timeout=600, check=False)  # fmt: skip
        found = _bin_dir()
    if found is None:
        raise PgUnavailable("initdb not found and the postgresql package could not be installed")
    return found


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PgServer:
    """One PostgreSQL server; ``url(db)`` names a database on it."""

    def __init__(self, *, fast: bool = True) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="banyan-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.fast = fast
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        argv = _as_postgres([str(self.bin / tool), *args])
        done = subprocess.run(argv, capture_output=True, timeout=120, cwd=self.root, check=False)
        if done.returncode:
            raise PgUnavailable(f"{tool} failed: {done.stderr.decode(errors='replace')[-500:]}")

    def url(self, db: str = "postgres") -> str:
        """A connection URL of database ``db``, password included."""
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def start(self, deadline: float = 60.0) -> None:
        """Start postgres and wait until it accepts connections.

        A first start moves to a fresh port if another process took this one;
        a restart keeps its port (its clients hold the URL), retried a while.
        """
        again = self.port if self.proc is not None else None
        on_a_free_port(functools.partial(self._start_on, deadline), again)

    def _start_on(self, deadline: float, port: int) -> None:
        self.port = port
        settings = ["-c", "listen_addresses=127.0.0.1"]
        settings += ["-c", f"unix_socket_directories={self.root}"]
        if self.fast:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        argv = _as_postgres([str(self.bin / "postgres"), "-D", str(self.data),
                             "-p", str(self.port), *settings])  # fmt: skip
        with open(self.root / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.root)
        end = time.monotonic() + deadline
        while not self.ready():
            exited = self.proc.poll() is not None
            if exited or time.monotonic() > end:
                self.stop()
                error = PortTaken if exited and port_taken(port) else PgUnavailable
                raise error(f"postgres did not start; see {self.root / 'postgres.log'}")
            time.sleep(0.1)

    def ready(self) -> bool:
        """Whether the server accepts a connection now."""
        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Stop postgres (fast shutdown: sessions are cut), waiting for it to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        # pg_ctl signals the postmaster itself; runuser would not pass SIGINT on.
        argv = _as_postgres([str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast"])
        subprocess.run(argv, capture_output=True, timeout=120, cwd=self.root, check=False)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(60)

    def create_database(self, name: str, template: str = "template0") -> str:
        """A new empty database; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'.encode())
        return self.url(name)

    def log_text(self) -> str:
        """What postgres wrote to its log so far."""
        return (self.root / "postgres.log").read_text(errors="replace")

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _started() -> PgServer:
    server = PgServer()
    try:
        server.start()
    except BaseException:
        server.remove()
        raise
    return server


def start_or_skip() -> PgServer:
    """A running PostgreSQL server; skips the test without one, fails instead under CI."""
    try:
        return _started()
    except (PgUnavailable, OSError, KeyError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"no PostgreSQL here: {exc}")
