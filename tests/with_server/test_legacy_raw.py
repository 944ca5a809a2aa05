"""The concurrent 1.0.1 path against a raw HTTP/1.1 backend: odd answers, and TLS offering h2."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rawserver import CREATED, RawServer
from test_legacy_delivery import log_ids, logger_for

import banyan
from banyan import _transport


@pytest.fixture
def alpn_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RawServer]:
    """The strict-ALPN backend, its CA trusted through SSL_CERT_FILE by fresh TLS contexts."""
    server = RawServer(tmp_path, tls=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    monkeypatch.setattr(_transport, "_tls_contexts", {})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def raw_server(tmp_path: Path) -> Iterator[Callable[..., RawServer]]:
    """Starts a plain RawServer with the given answers; closes it after the test."""
    servers: list[RawServer] = []

    def serve(*answers: bytes) -> RawServer:
        servers.append(RawServer(tmp_path, answers=answers))
        return servers[-1]

    yield serve
    for server in servers:
        server.close()


@pytest.mark.parametrize("http2", [True, False])
def test_the_101_pool_offers_only_http1_even_where_the_batch_path_chose_h2(
    alpn_server: RawServer, http2: bool
) -> None:
    """ALPN: the 1.0.1 pool offers only http/1.1, whatever the batch client negotiated."""
    logger = logger_for(alpn_server.base_url, http2=http2, max_retries=1)
    log_ids(logger, 20)
    assert logger.flush(timeout=30)
    logger.shutdown(timeout=10)
    assert alpn_server.requests == logger.get_stats()["logs_sent"] == 20
    assert alpn_server.chosen[0] == ("h2" if http2 else "http/1.1")
    assert set(alpn_server.chosen[1:]) == {"http/1.1"}


_INTERIM = b"HTTP/1.1 100 Continue\r\n\r\n"
_UNAVAILABLE = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    ("answers", "logged", "retries"),
    [
        ((b"HTTP/1.1 204 No Content\r\n\r\n",), 4, 0),
        ((_INTERIM + _UNAVAILABLE, _INTERIM + CREATED), 1, 1),
    ],
    ids=["204-without-length", "100-then-503"],
)
def test_a_204_ends_at_its_head_and_an_interim_100_is_skipped(
    raw_server: Callable[..., RawServer], answers: tuple[bytes, ...], logged: int, retries: int
) -> None:
    """204 has no body (sent once, not timed out and resent); after 100 Continue the 503 is the
    answer (RFC 9110 15.2), so the record is retried, not counted as sent."""
    server = raw_server(*answers)
    logger = logger_for(server.base_url, http2=False, timeout=5.0)
    log_ids(logger, logged)
    assert logger.flush(timeout=30)
    logger.shutdown(timeout=10)
    stats = logger.get_stats()
    assert (stats["logs_sent"], stats["retries"], stats["possible_duplicates"]) == (
        logged,
        retries,
        0,
    )
    assert server.requests == logged + retries


def test_shutdown_from_async_code_closes_the_101_pool(
    raw_server: Callable[..., RawServer],
) -> None:
    """shutdown() on a thread whose event loop runs still closes the pool's loop and sockets."""
    server = raw_server(CREATED)
    logger = logger_for(server.base_url, http2=False)
    log_ids(logger, 20)
    assert logger.flush(timeout=30)
    fanout = logger._transport._fanout
    assert fanout is not None
    assert server.open > 0

    async def shut_down() -> None:
        logger.shutdown(timeout=10)

    asyncio.run(shut_down())
    assert fanout._loop is None
    deadline = time.monotonic() + 30
    while server.open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.open == 0


def test_a_refused_key_keeps_the_records_in_the_spool(
    raw_server: Callable[..., RawServer], tmp_path: Path
) -> None:
    """401 from the 1.0.1 endpoint with a spool: records held, not dropped, warned once."""
    server = raw_server(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
    logger = logger_for(server.base_url, http2=False, spool_dir=str(tmp_path / "spool"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        log_ids(logger, 3)
        assert logger.flush(timeout=10) is False
    stats = logger.get_stats()
    logger.shutdown(timeout=5)
    assert [w.category for w in seen if "API key" in str(w.message)] == [banyan.BanyanWarning]
    assert (stats["logs_dropped"], stats["spooled_pending"], stats["logs_sent"]) == (0, 3, 0)
