"""Scores and usage records take every path a record takes (#18 item 1): the spool and its
replay, durable mode, and the ledger's identity in every snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from serverkit import stored_records
from spoolwait import drain
from test_ledger_identity import Watcher
from test_spool_replay import invariant, restart

import banyan

if TYPE_CHECKING:
    from faultproxy import FaultProxy
    from serverproc import Server


def _log_outcomes(logger: banyan.PromptStackLogger) -> None:
    """One record with usage and two scores naming it."""
    assert logger.log_prompt("q", "a", input_tokens=12, output_tokens=3, cached_input_tokens=2,
                             cost=0.25, record_id="answer-1")  # fmt: skip
    assert logger.log_score("stars", 4, record_id="answer-1", metadata={"by": "reviewer"})
    assert logger.log_score("reason", "too_long", record_id="answer-1")


def _check_stored(server: Server) -> None:
    """The record is stored with its usage, the scores as scores naming it."""
    (record,) = stored_records(server)
    assert (record["id"], record["input_tokens"], record["output_tokens"]) == ("answer-1", 12, 3)
    assert (record["cached_input_tokens"], record["cost"]) == (2, 0.25)
    scores = {s["name"]: s for s in stored_records(server, "scores")}
    assert (scores["stars"]["value"], scores["stars"]["metadata"]) == (4.0, {"by": "reviewer"})
    assert scores["reason"]["value"] == "too_long"
    assert {s["record_id"] for s in scores.values()} == {"answer-1"}


def _logger(server: Server, spool: Path, **options: Any) -> banyan.PromptStackLogger:
    return banyan.PromptStackLogger(server.api_key, server.base_url, spool_dir=str(spool),
                                    retry_delay=0.05, disk_cache=False, **options)  # fmt: skip


@pytest.mark.parametrize("durability", ["buffered", "durable"])
def test_scores_and_usage_spooled_in_an_outage_are_replayed_and_stored(
    server: Server, tmp_path: Path, durability: str
) -> None:
    """Server down: a usage record and its scores are spooled; the next logger replays them,
    and the server stores the tokens and cost, and the scores as scores."""
    spool = tmp_path / "spool"
    server.stop()
    first = _logger(server, spool, durability=durability, max_retries=0)
    _log_outcomes(first)
    first.shutdown(timeout=5)
    stats = first.get_stats()
    invariant(dict(stats))
    assert stats["logs_queued"] == 3
    assert stats["spool_handed_over"] == 3
    server = restart(server, tmp_path)
    try:
        second = _logger(server, spool, durability=durability)
        assert drain(second, 30)
        second.shutdown(timeout=10)
        assert second.get_stats()["replayed"] == 3
        _check_stored(server)
    finally:
        server.stop()


def test_scores_and_usage_in_durable_mode_are_stored(server: Server, tmp_path: Path) -> None:
    """durability="durable" with the server up: the record and scores pass the spool's segment
    and are stored, usage and scores intact."""
    logger = _logger(server, tmp_path / "spool", durability="durable")
    _log_outcomes(logger)
    assert logger.flush(30)
    logger.shutdown(timeout=10)
    stats = logger.get_stats()
    assert (stats["logs_queued"], stats["logs_sent"]) == (3, 3)
    _check_stored(server)


def test_the_identity_holds_in_every_snapshot_with_scores_and_usage(
    server: Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Snapshots taken continuously while usage records and scores meet 503s and resets, spill
    from a full ring into the spool and replay: the ledger identity holds in every one, and
    everything is stored once."""
    logger = banyan.PromptStackLogger(
        server.api_key, proxy.url, http2=False, retry_delay=0.01, max_retries=1,
        flush_interval=0.02, batch_size=20, max_queue_bytes=32 << 10, max_retry_delay=0.2,
        spool_dir=str(tmp_path / "spool"),
    )  # fmt: skip
    with logger, Watcher(logger) as watcher:
        proxy.push("status", times=10, status=503)
        proxy.push("reset", times=4)
        for i in range(1000):
            logger.log_prompt(f"in {i}", "o" * 100, input_tokens=i, cost=0.001, record_id=f"r{i}")
            logger.log_score("stars", i % 5, record_id=f"r{i}", metadata={"note": "n" * 50})
        assert drain(logger, 60)
    stats = logger.get_stats()
    assert stats["logs_queued"] == 2000
    assert stats["spooled"] > 0
    assert watcher.snapshots > 100
    assert watcher.unbalanced == []
    assert len(stored_records(server)) == 1000
    assert len(stored_records(server, "scores")) == 1000
    assert sum(record["input_tokens"] for record in stored_records(server)) == sum(range(1000))
