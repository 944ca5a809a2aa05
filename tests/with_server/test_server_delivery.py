"""Delivery into the real server: exactly-once by id, drops counted, protocols, codecs."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import pytest
from contention import contended

import banyan

if TYPE_CHECKING:
    from serverproc import Server


def send(server: Server, n: int, **options: Any) -> banyan.PromptStackLogger:
    """Log ``n`` records through a fresh logger, flush, shut it down, return it."""
    options.setdefault("flush_interval", 0.05)
    logger = banyan.PromptStackLogger(api_key=server.api_key, base_url=server.base_url, **options)
    for i in range(n):
        logger.log_prompt(input=f"input {i}", output="x" * 200, metadata={"i": i})
    logger.flush(timeout=30)
    logger.shutdown(timeout=10)
    return logger


def balanced(stats: banyan.Statistics) -> bool:
    return bool(
        stats["logs_queued"]
        == stats["logs_sent"] + stats["logs_dropped"] + stats["queue_size"] + stats["in_flight"]
    )


def test_burst_far_above_the_ring_is_stored_or_counted_exactly(server: Server) -> None:
    """Without a spool, 20k records into a 256 KiB ring: stored + dropped == N, no duplicate ids."""
    logger = send(server, 20_000, max_queue_bytes=256 * 1024, batch_size=200, spool_dir=False)
    stats = logger.get_stats()
    ids = server.stored_ids()
    assert len(ids) == len(set(ids)) == stats["logs_sent"]
    assert stats["dropped"]["queue_full"] > 0
    assert len(ids) + stats["logs_dropped"] == 20_000
    assert server.summary()["duplicates"] == 0
    assert balanced(stats)


def test_http2_is_negotiated_over_h2c(server: Server) -> None:
    """The default transport speaks HTTP/2 (prior knowledge) to an http:// server."""
    logger = send(server, 500)
    assert logger.get_stats()["http_version"] == "HTTP/2"
    assert server.summary()["stored"] == 500


def test_http11_option(server: Server) -> None:
    """http2=False sends over HTTP/1.1 keep-alive."""
    logger = send(server, 500, http2=False)
    assert logger.get_stats()["http_version"] == "HTTP/1.1"
    assert server.summary()["stored"] == 500


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_compressed_batches(server: Server, codec: str) -> None:
    """gzip and zstd bodies are accepted and send fewer bytes than the raw records."""
    logger = send(server, 2000, compression=codec)
    stats = logger.get_stats()
    assert server.summary()["stored"] == 2000
    assert stats["bytes_sent"] < 2000 * 200


def test_bad_api_key_is_one_warning_and_counted_drops(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """401 without a spool: every record counted as unauthorized, one warning that names the
    API key (with a spool they are held: test_spool_replay.py)."""
    logger = banyan.PromptStackLogger(
        api_key="psk_wrong", base_url=server.base_url, batch_size=10, flush_interval=0.05,
        spool_dir=False,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="banyan"):
        for i in range(50):
            logger.log_prompt(f"i{i}", "o")
        assert logger.flush(timeout=10) is False
        logger.shutdown(timeout=5)
    stats = logger.get_stats()
    assert stats["dropped"]["unauthorized"] == 50
    assert stats["retries"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "banyan"]
    assert len(warnings) == 1
    assert "API key" in warnings[0]
    assert server.summary()["stored"] == 0


def test_blocking_log_in_background_mode(server: Server) -> None:
    """blocking=True delivers now even with the background thread on."""
    logger = banyan.PromptStackLogger(api_key=server.api_key, base_url=server.base_url)
    assert logger.log_prompt("i", "o", blocking=True) is True
    assert server.summary()["stored"] == 1
    logger.shutdown(timeout=5)


def test_threads_logging_at_once_through_the_credit_lose_nothing(server: Server) -> None:
    """Four threads log at once into a small ring with a 10 us switch interval, so fast-path
    appends, credit settlements, wakes and overflows into the spool interleave: every record
    is stored once and the ring's byte count returns to exactly zero."""
    threads_n, per_thread = 4, 3_000
    logger = banyan.PromptStackLogger(
        api_key=server.api_key, base_url=server.base_url, max_queue_bytes=128 * 1024,
        batch_size=50, flush_interval=0.05,
    )  # fmt: skip

    def produce(t: int) -> None:
        for i in range(per_thread):
            logger.log_prompt(input=f"t{t} {i}", output="x" * 300)

    contended(produce, threads_n)
    assert logger.flush(timeout=60)
    stats = logger.get_stats()
    assert (stats["queue_size"], stats["queue_bytes"], stats["logs_dropped"]) == (0, 0, 0)
    # What overflowed into the spool is replayed once the server has room: wait for it.
    deadline = time.monotonic() + 60
    while logger.get_stats()["spooled_pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    logger.shutdown(timeout=10)
    ids = server.stored_ids()
    assert len(ids) == len(set(ids)) == threads_n * per_thread, logger.get_stats()


def test_the_api_key_never_enters_hpack_nor_a_debug_log(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Root logging at DEBUG over HTTP/2: hpack logs the headers it encodes, never the key
    (sent never-indexed, so it stays out of the dynamic table too)."""
    with caplog.at_level(logging.DEBUG):
        send(server, 3, http2=True)
    assert any(record.name.startswith("hpack") for record in caplog.records)
    assert not [r.getMessage() for r in caplog.records if server.api_key in r.getMessage()]
    assert len(server.stored_ids()) == 3


def test_a_record_over_the_servers_limit_is_dropped_at_once_never_sent(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A record above MAX_BATCH_BYTES: log_prompt drops it at once (False), counted
    too_large and warned once; flush() reports the loss; the next record is stored."""
    from banyan._wire import MAX_BATCH_BYTES

    logger = banyan.PromptStackLogger(
        api_key=server.api_key, base_url=server.base_url, timeout=60, spool_dir=False
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert not logger.log_prompt(input="x" * (MAX_BATCH_BYTES + 1), output="o")
        assert logger.flush(timeout=120) is False
    assert time.monotonic() - started < 60
    logger.log_prompt(input="small", output="o")
    assert logger.flush(timeout=30)
    stats = logger.get_stats()
    assert (stats["dropped"]["too_large"], stats["logs_sent"], stats["retries"]) == (1, 1, 0)
    assert len([r for r in caplog.records if "over the server's limit" in r.getMessage()]) == 1
    assert server.summary()["stored"] == 1
    logger.shutdown(timeout=10)
