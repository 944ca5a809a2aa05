"""The 1.0.1 request body's edges other tests pass by (mutants of _legacybody.py, #21)."""

from __future__ import annotations

import logging
import warnings

import orjson
import pytest
from fakes import RECORDS

from banyan._legacybody import legacy_job, legacy_jobs
from banyan._record import Record, Score, encode
from banyan._stats import DropReason, Stats


def test_a_record_with_an_empty_id_is_sent_with_an_empty_idempotency_key() -> None:
    """A record whose id is empty gets an empty key, not a made-up one."""
    job = legacy_job(encode(Record(id="", ts=1.5, input="i", output="o")))
    assert job is not None
    assert (job.key, orjson.loads(job.body)) == (
        "",
        {"id": "", "input": "i", "output": "o", "metadata": {}},
    )


def test_scores_left_out_are_counted_unsupported_and_warned_loudly_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Scores are dropped as unsupported with the reason kept as last_error, and the user is
    told once, loudly, how to keep them."""
    score = encode(Score("s-1", 1.5, "stars", 4.0, record_id="r0"))
    stats = Stats()
    with caplog.at_level(logging.WARNING, logger="banyan"), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert len(legacy_jobs([*RECORDS, score, score], stats)) == 3
        assert len(legacy_jobs([score], stats)) == 0
    error = "the server speaks only the 1.0.1 protocol, which cannot store scores"
    assert (stats.dropped[DropReason.UNSUPPORTED], stats.last_error) == (3, error)
    assert caplog.messages == [
        f"banyan: {error}: log_score() records are dropped, counted as unsupported in "
        "get_stats() (upgrade the server to keep them)"
    ]
