"""Against a real 1.0.1-only backend (tests/legacyserver.py): concurrent single-record delivery.

Faults come from the fault proxy (HTTP/1.1) in front of it. The backend
stores every request, duplicates included, as the 1.0.1 service does.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from faultproxy import Fault, FaultProxy, running
from legacyserver import LegacyServer, start
from serverproc import free_port
from test_spool_replay import invariant

import banyan
from banyan._fanout import Limiter
from banyan._wire import SINGLE_LOG_PATH

KEY = "psk_legacy_0123456789abcdef"


@pytest.fixture
def legacy() -> Iterator[LegacyServer]:
    """A 1.0.1-only backend answering after 50 ms."""
    server = start(free_port(), delay_ms=50)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def legacy_proxy(legacy: LegacyServer) -> Iterator[FaultProxy]:
    """The fault proxy in front of the 1.0.1 backend."""
    with running(legacy.base_url) as proxy:
        yield proxy


def logger_for(url: str, **options: Any) -> banyan.PromptStackLogger:
    """A logger with fast retries and no spool unless asked."""
    options = {"retry_delay": 0.02, "flush_interval": 0.05, "spool_dir": False, **options}
    return banyan.PromptStackLogger(api_key=KEY, base_url=url, **options)


def log_ids(logger: banyan.PromptStackLogger, n: int) -> None:
    for i in range(n):
        logger.log_prompt(input=f"in {i}", output="out", metadata={"i": i})


def assert_all_stored(legacy: LegacyServer, logger: banyan.PromptStackLogger, n: int) -> None:
    """Every record stored at least once; copies only where a possible duplicate was counted."""
    stored = legacy.stored()
    stats = logger.get_stats()
    assert len(set(stored["ids"])) == n == stats["logs_sent"]
    assert len(stored["ids"]) - n <= stats["possible_duplicates"]
    assert stats["logs_dropped"] == 0


@pytest.mark.parametrize("http2", [True, False])
def test_records_go_many_at_once_with_their_id_as_idempotency_key(
    legacy: LegacyServer, http2: bool
) -> None:
    """N logged = N stored once, several requests at the server at a time, each keyed by its id."""
    logger = logger_for(legacy.base_url, http2=http2)
    log_ids(logger, 300)
    assert logger.flush(timeout=60)
    stored = legacy.stored()
    assert stored["peak"] > 1
    assert stored["keys"] == stored["ids"]
    assert_all_stored(legacy, logger, 300)
    assert logger.get_stats()["possible_duplicates"] == 0
    assert logger.get_stats()["legacy_concurrency"] > 1
    logger.shutdown(timeout=10)


def test_429_bursts_cut_the_concurrency_which_recovers(
    legacy: LegacyServer, legacy_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """429 bursts with Retry-After: the limit halves, then grows again; nothing lost or doubled."""
    limits: list[int] = []
    overload = Limiter.overload

    def spy(self: Limiter, started: float) -> None:
        overload(self, started)
        limits.append(self.limit)

    monkeypatch.setattr(Limiter, "overload", spy)
    logger = logger_for(legacy_proxy.url, http2=False, max_retries=10)
    log_ids(logger, 400)
    assert logger.flush(timeout=60)
    grown = logger.get_stats()["legacy_concurrency"]
    legacy_proxy.push("status", times=20, path=SINGLE_LOG_PATH, status=429, retry_after="0.2")
    log_ids(logger, 400)
    assert logger.flush(timeout=60)
    assert limits
    assert min(limits) < grown
    # Growth after a cut counts only answers as fast as the best: a busy machine may need
    # more than one round of 400.
    logged = 800
    while logged < 2800 and logger.get_stats()["legacy_concurrency"] <= min(limits):
        log_ids(logger, 400)
        logged += 400
        assert logger.flush(timeout=60)
    assert logger.get_stats()["legacy_concurrency"] > min(limits)
    assert_all_stored(legacy, logger, logged)
    assert logger.get_stats()["possible_duplicates"] == 0
    logger.shutdown(timeout=10)


def test_503s_resets_and_stalls_lose_nothing_and_count_possible_duplicates(
    legacy: LegacyServer, legacy_proxy: FaultProxy
) -> None:
    """503 (not processed), resets and stalls (outcome unknown): all N stored, doubts counted."""
    for kind, extra in (("status", {"status": 503}), ("reset", {}), ("stall", {})):
        legacy_proxy.push(kind, times=4, path=SINGLE_LOG_PATH, **extra)
    logger = logger_for(legacy_proxy.url, http2=False, timeout=2, max_retries=10)
    log_ids(logger, 300)
    assert logger.flush(timeout=60)
    stats = logger.get_stats()
    assert stats["retries"] >= 12
    # Resets and stalls happen after the request was sent: its outcome is unknown.
    assert stats["possible_duplicates"] >= 8
    assert_all_stored(legacy, logger, 300)
    logger.shutdown(timeout=10)


@pytest.mark.parametrize("background", [True, False])
def test_flush_and_shutdown_keep_their_deadlines_and_spool_what_is_in_flight(
    legacy: LegacyServer, legacy_proxy: FaultProxy, tmp_path: Any, background: bool
) -> None:
    """Every request stalled: flush(1) and shutdown(1) end long before the request timeout;
    the records in flight are spooled once, counted as possible duplicates. In synchronous
    mode flush's deadline cuts the requests short itself, and the spooled batch is settled."""
    legacy_proxy.always.append(Fault("stall", path=SINGLE_LOG_PATH))
    logger = logger_for(
        legacy_proxy.url, http2=False, timeout=30, spool_dir=str(tmp_path),
        background_thread=background,
    )  # fmt: skip
    log_ids(logger, 100)
    start_at = time.monotonic()
    assert logger.flush(timeout=1) is not background
    assert time.monotonic() - start_at < 15
    start_at = time.monotonic()
    assert logger.shutdown(timeout=1) is True
    assert time.monotonic() - start_at < 15
    stats = logger.get_stats()
    assert (stats["logs_sent"], stats["logs_dropped"], stats["spooled"]) == (0, 0, 100)
    assert stats["logs_queued"] == 100
    assert stats["possible_duplicates"] > 0


def test_records_spooled_during_an_outage_replay_to_the_101_server(
    legacy: LegacyServer, legacy_proxy: FaultProxy, tmp_path: Any
) -> None:
    """503s until the retries run out: the records wait in the spool, then replay one by one
    (with replay's single attempt) once the server answers; each stored once."""
    legacy_proxy.always.append(Fault("status", status=503, path=SINGLE_LOG_PATH))
    logger = logger_for(legacy_proxy.url, http2=False, max_retries=1, spool_dir=str(tmp_path))
    log_ids(logger, 200)
    assert logger.flush(timeout=30)
    assert logger.get_stats()["spooled"] == 200
    legacy_proxy.always.clear()
    log_ids(logger, 10)
    deadline = time.monotonic() + 60
    while len(set(legacy.stored()["ids"])) < 210 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logger.flush(timeout=30)
    ids = legacy.stored()["ids"]
    assert len(ids) == len(set(ids)) == 210
    logger.shutdown(timeout=10)


def test_the_rate_cap_spaces_the_requests(legacy: LegacyServer) -> None:
    """legacy_max_rate=40: 21 records take at least half a second (20 intervals of 25 ms)."""
    logger = logger_for(legacy.base_url, legacy_max_rate=40.0)
    logger.log_prompt(input="first", output="o", blocking=True)
    start_at = time.monotonic()
    log_ids(logger, 21)
    assert logger.flush(timeout=60)
    assert time.monotonic() - start_at >= 0.5
    assert_all_stored(legacy, logger, 22)
    logger.shutdown(timeout=10)


def test_scores_are_dropped_as_unsupported_before_sending_and_warned_once(
    legacy: LegacyServer,
) -> None:
    """A 1.0.1 service cannot store scores: none is sent, each is counted as unsupported and
    warned about once; the records beside them are stored, none refused, all accounted for."""
    logger = logger_for(legacy.base_url)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for i in range(5):
            logger.log_prompt(f"in {i}", "out", record_id=f"rec-{i}")
            logger.log_score("stars", i, record_id=f"rec-{i}")
        assert logger.flush(timeout=30) is False
        assert logger.log_score("accepted", True, record_id="rec-0", blocking=True) is False
    stats = logger.get_stats()
    logger.shutdown(timeout=10)
    stored = legacy.stored()
    assert (sorted(stored["ids"]), stored["refused"]) == ([f"rec-{i}" for i in range(5)], [])
    assert stats["dropped"]["unsupported"] == stats["logs_dropped"] == 6
    assert stats["logs_sent"] == 5
    invariant(stats)
    assert [w.category for w in seen if "log_score" in str(w.message)] == [banyan.BanyanWarning]


def test_a_record_with_usage_is_stored_without_the_fields_101_does_not_know(
    legacy: LegacyServer,
) -> None:
    """Token usage and cost, which the 1.0.1 contract does not name, are left out there: the
    record is stored (with the metadata 1.0.1 always sent), nothing refused or dropped."""
    logger = logger_for(legacy.base_url)
    logger.log_prompt("in", "out", model="m", input_tokens=10, output_tokens=5,
                      cached_input_tokens=2, cost=0.01, record_id="usage-1")  # fmt: skip
    assert logger.flush(timeout=30)
    stats = logger.get_stats()
    logger.shutdown(timeout=10)
    stored = legacy.stored()
    assert (stored["ids"], stored["refused"]) == (["usage-1"], [])
    assert stored["fields"] == ["id", "input", "metadata", "model", "output"]
    assert (stats["logs_sent"], stats["logs_dropped"]) == (1, 0)
    invariant(stats)


def test_scores_spooled_before_the_101_server_was_found_are_dropped_at_replay(
    tmp_path: Any,
) -> None:
    """Records and scores spooled while nothing answered replay to a 1.0.1 server that then
    starts: the records stored once, the scores counted as unsupported, all accounted for."""
    port = free_port()
    logger = logger_for(f"http://127.0.0.1:{port}", http2=False, max_retries=0,
                        spool_dir=str(tmp_path))  # fmt: skip
    for i in range(5):
        logger.log_prompt(f"in {i}", "out", record_id=f"rec-{i}")
        logger.log_score("stars", i, record_id=f"rec-{i}")
    assert logger.flush(timeout=30)
    assert logger.get_stats()["spooled"] == 10
    legacy = start(port)
    try:
        # A live record after the restart: the replay waits for a delivery to succeed.
        logger.log_prompt("live", "out", record_id="rec-live")
        deadline = time.monotonic() + 60
        while logger.get_stats()["spool_segments"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert logger.flush(timeout=30) is False
        stats = logger.get_stats()
        logger.shutdown(timeout=10)
        stored = legacy.stored()
    finally:
        legacy.stop()
    assert sorted(stored["ids"]) == [*(f"rec-{i}" for i in range(5)), "rec-live"]
    assert stored["refused"] == []
    assert (stats["logs_sent"], stats["dropped"]["unsupported"], stats["logs_dropped"]) == (6, 5, 5)
    invariant(stats)
