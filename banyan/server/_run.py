"""`banyan serve`: bootstrap the database, then run the app under granian."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from banyan.server import _auth, _retention
from banyan.server._app import DB_ENV, LOG_LEVEL_ENV
from banyan.server._limits import Limits
from banyan.server.store import (
    DATABASE_URL_ENV,
    DEFAULT_DATABASE,
    POOL_SIZE_ENV,
    Bootstrap,
    open_store,
    redact,
)

#: HTTP/2 frames up to 1 MiB: a 10,000-record batch then takes ~12 frames, not ~700.
MAX_FRAME_SIZE = 1024 * 1024
#: Flow-control windows of 16 MiB: with granian's 1 MiB default, several
#: clients uploading 4 MiB batches at once stalled until their read timeout.
WINDOW_SIZE = 16 * 1024 * 1024
#: Where `banyan serve` looks for the bootstrap key when no option gives it. Not
#: the client's BANYAN_API_KEY: a client key in the environment must not become
#: a local server's admin key unasked.
API_KEY_ENV = "BANYAN_SERVE_API_KEY"


def read_api_key(value: str | None, file: Path | None) -> str | None:
    """The bootstrap key: ``--api-key``, else ``--api-key-file``, else $BANYAN_SERVE_API_KEY.

    A file or the environment keep the key out of ``ps``. ValueError when both
    options are given or the key is not of the form psk_...; OSError when the
    file cannot be read.
    """
    if value is not None and file is not None:
        raise ValueError("give --api-key or --api-key-file, not both")
    key = file.read_text().strip() if file else value
    if key is None:
        key = os.environ.get(API_KEY_ENV)
    if key is not None and not _auth.is_key_text(key):
        raise ValueError("the API key must start with psk_ and be 8 to 256 characters long")
    return key


def database_target(db: str | os.PathLike[str] | None) -> str:
    """What ``--db`` names: a URL as given, a path made absolute; else $BANYAN_DATABASE_URL."""
    text = os.fspath(db) if db is not None else os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE
    return text if "://" in text else str(Path(text).resolve())


async def _bootstrap(target: str, api_key: str | None) -> Bootstrap:
    store = await open_store(target)
    try:
        return await store.bootstrap(api_key)
    finally:
        await store.close()


def bootstrap(target: str, api_key: str | None) -> None:
    """Create or upgrade the schema, the default project and key; print what a user needs.

    A key the user gave is printed by its prefix only, a URL without its
    password: output ends up in logs.
    """
    done = asyncio.run(_bootstrap(target, api_key))
    print(f"banyan: database {redact(target)}", flush=True)
    if done.key is None:
        print("banyan: using the existing keys of this database", flush=True)
        return
    state = "created" if done.created else "already present"
    print(f"banyan: project {_auth.DEFAULT_PROJECT!r} id {done.project_id}", flush=True)
    shown = done.key if api_key is None else f"{done.key[:8]}..."
    print(f"banyan: API key ({state}): {shown}", flush=True)


def _check_free(host: str, port: int) -> None:
    """OSError when another server listens on ``host:port``.

    granian binds with SO_REUSEPORT, so a second ``banyan serve`` on a busy port
    would start and take every other connection, into another database.
    SO_REUSEADDR alone still binds a port that only has closed connections left.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    db: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    workers: int = 1,
    log_level: str = "warning",
    shutdown_timeout: int = 5,
    limits: Limits | None = None,
    retention_days: int | None = None,
    db_pool_size: int | None = None,
) -> None:
    """Run the reference server until SIGTERM or Ctrl-C.

    On a signal, open connections get ``shutdown_timeout`` seconds; granian
    then ends the worker even if idle keep-alive clients hold it open. Every
    acknowledged batch is committed already, so nothing answered is lost.
    ``limits`` bounds what each worker admits (see ``_limits``). ``db`` is a
    SQLite path or a ``postgresql://`` URL (default: $BANYAN_DATABASE_URL, else
    banyan.db). ``retention_days`` starts one process beside the workers that
    prunes older logs and scores at start, then hourly (see ``_retention``).
    ``db_pool_size`` caps each worker's PostgreSQL connections (default:
    $BANYAN_DB_POOL_SIZE, else 8).
    """
    target = database_target(db)
    if db_pool_size is not None:
        os.environ[POOL_SIZE_ENV] = str(db_pool_size)
    _check_free(host, port)
    bootstrap(target, api_key)
    # Workers are separate processes that build the app from the environment.
    os.environ[DB_ENV] = target
    os.environ[LOG_LEVEL_ENV] = log_level
    os.environ.update((limits or Limits.from_environ()).environ())
    scheme = "https" if tls_cert else "http"
    print(f"banyan: serving on {scheme}://{host}:{port} (HTTP/1.1 and HTTP/2)", flush=True)
    pruner = _retention.start(target, retention_days, log_level) if retention_days else None
    try:
        _granian(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, workers=workers,
                 log_level=log_level, shutdown_timeout=shutdown_timeout)  # fmt: skip
    finally:
        if pruner is not None:
            pruner.terminate()
            pruner.join(shutdown_timeout)


def _granian(
    *, host: str, port: int, tls_cert: Path | None, tls_key: Path | None, workers: int,
    log_level: str, shutdown_timeout: int,
) -> None:  # fmt: skip
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP2Settings
    from granian.log import LogLevels

    Granian(
        "banyan.server._app:create_app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.auto,
        http2_settings=HTTP2Settings(
            max_frame_size=MAX_FRAME_SIZE,
            initial_connection_window_size=WINDOW_SIZE,
            initial_stream_window_size=WINDOW_SIZE,
        ),
        workers=workers,
        factory=True,
        ssl_cert=tls_cert,
        ssl_key=tls_key,
        log_level=LogLevels(log_level),
        workers_kill_timeout=shutdown_timeout,
    ).serve()
