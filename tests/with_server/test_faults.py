"""Through a fault-injecting proxy: retries deliver exactly once, deadlines hold."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

import banyan
from banyan._wire import BATCH_PATH, SINGLE_LOG_PATH

if TYPE_CHECKING:
    from faultproxy import FaultProxy
    from serverproc import Server


def logger_for(proxy: FaultProxy, server: Server, **options: Any) -> banyan.PromptStackLogger:
    """A logger that talks HTTP/1.1 to the proxy, with fast retries."""
    options = {"http2": False, "retry_delay": 0.02, "flush_interval": 0.05, **options}
    return banyan.PromptStackLogger(api_key=server.api_key, base_url=proxy.url, **options)


def log_n(logger: banyan.PromptStackLogger, n: int) -> None:
    for i in range(n):
        logger.log_prompt(input=f"in {i}", output="out", metadata={"i": i})


def assert_exactly(server: Server, n: int) -> None:
    ids = server.stored_ids()
    assert len(ids) == len(set(ids)) == n
    assert server.summary()["duplicates"] == 0


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("status", {"status": 500}), ("status", {"status": 503}), ("reset", {})],
)
def test_transient_failures_are_retried_exactly_once(
    server: Server, proxy: FaultProxy, kind: str, extra: dict[str, Any]
) -> None:
    """500, 503 and connection resets on the batch path: all N stored, no duplicates."""
    proxy.push(kind, times=3, path=BATCH_PATH, **extra)
    logger = logger_for(proxy, server, max_retries=5, batch_size=100)
    log_n(logger, 1000)
    assert logger.flush(timeout=20)
    assert logger.get_stats()["retries"] >= 3
    logger.shutdown(timeout=5)
    assert_exactly(server, 1000)


def test_retry_after_is_honoured(server: Server, proxy: FaultProxy) -> None:
    """429 with Retry-After: 1 delays the retry by at least a second, then delivers."""
    proxy.push("status", times=1, path=BATCH_PATH, status=429, retry_after="1")
    logger = logger_for(proxy, server)
    start = time.monotonic()
    log_n(logger, 10)
    assert logger.flush(timeout=10)
    assert time.monotonic() - start >= 0.95
    logger.shutdown(timeout=5)
    assert_exactly(server, 10)


def test_stalled_connection_is_replaced_and_the_batch_retried(
    server: Server, proxy: FaultProxy
) -> None:
    """A request that never answers times out; a new connection delivers the batch."""
    proxy.push("stall", times=1, path=BATCH_PATH)
    logger = logger_for(proxy, server, timeout=0.5)
    log_n(logger, 100)
    assert logger.flush(timeout=10)
    logger.shutdown(timeout=5)
    assert_exactly(server, 100)


@pytest.mark.parametrize("background", [True, False])
def test_flush_and_shutdown_meet_their_deadlines_against_a_stall(
    server: Server, proxy: FaultProxy, background: bool
) -> None:
    """Every request stalled: flush(1) and shutdown(1) return within ~1 s; the rest is spooled.
    In synchronous mode too, where the request runs on the caller's thread: cut short at the
    deadline, its batch is spooled, so that flush reports it settled."""
    proxy.always.append(__import__("faultproxy").Fault("stall"))
    logger = logger_for(proxy, server, timeout=30, background_thread=background, batch_size=1000)
    log_n(logger, 100)
    start = time.monotonic()
    assert logger.flush(timeout=1) is not background
    assert time.monotonic() - start < logger.config.timeout / 2  # not the 30 s request timeout
    start = time.monotonic()
    assert logger.shutdown(timeout=1) is True
    assert time.monotonic() - start < logger.config.timeout / 2
    stats = logger.get_stats()
    assert stats["logs_sent"] == 0
    assert stats["logs_queued"] == 100
    assert (stats["spooled"], stats["logs_dropped"]) == (100, 0)


def test_old_backend_gets_one_json_record_per_request(server: Server, proxy: FaultProxy) -> None:
    """404 on the batch path: fall back to the 1.0.1 endpoint; every id stored once."""
    proxy.always.append(__import__("faultproxy").Fault("status", status=404, path=BATCH_PATH))
    logger = logger_for(proxy, server)
    log_n(logger, 30)
    assert logger.flush(timeout=20)
    logger.shutdown(timeout=5)
    assert proxy.seen.count(SINGLE_LOG_PATH) == 30
    assert_exactly(server, 30)
    assert server.summary()["single"] == 30


@pytest.fixture
def untrusted_tls_url(tmp_path: Any) -> Iterator[str]:
    """A loopback TLS listener whose certificate no default CA bundle trusts."""
    import socket
    import ssl
    import threading

    import trustme

    cert = trustme.CA().issue_cert("127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


@pytest.mark.parametrize("http2", [True, False])
def test_a_certificate_failure_is_warned_loudly_and_the_records_spooled(
    untrusted_tls_url: str, http2: bool, tmp_path: Any
) -> None:
    """A certificate that fails verification: a BanyanWarning (seen with no logging set up),
    last_error says so, and the records wait in the spool instead of being lost."""
    logger = banyan.PromptStackLogger(
        api_key="psk_x_0123456789", base_url=untrusted_tls_url, http2=http2, max_retries=1,
        retry_delay=0.01, flush_interval=0.05, spool_dir=str(tmp_path / "spool"),
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        log_n(logger, 5)
        assert logger.flush(timeout=30)
        logger.log_prompt(input="again", output="o")
        assert logger.flush(timeout=30)
    loud = [w.category for w in seen if "retrying will not help" in str(w.message)]
    assert loud == [banyan.BanyanWarning]
    stats = logger.get_stats()
    assert stats["last_error"]
    assert (stats["spooled"], stats["logs_dropped"], stats["logs_sent"]) == (6, 0, 0)
    logger.shutdown(timeout=5)
