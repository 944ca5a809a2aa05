"""Delivery policy: retries, Retry-After, final refusals, rejected records, 1.0.1 fallback."""

from __future__ import annotations

import logging
import threading
import time
import warnings

import msgspec
import pytest
from fakes import FakeResponse, MakeLogger, status

from banyan._exceptions import ConnectError, RequestTimeout
from banyan._warn import BanyanWarning
from banyan._wire import BATCH_ID_HEADER, BATCH_PATH, IDEMPOTENCY_HEADER, SINGLE_LOG_PATH


def log_and_flush(logger: object, n: int, timeout: float = 5) -> bool:
    for i in range(n):
        logger.log_prompt(f"in {i}", "out")  # type: ignore[attr-defined]
    return bool(logger.flush(timeout))  # type: ignore[attr-defined]


def test_transient_errors_are_retried_with_the_same_batch_id(make_logger: MakeLogger) -> None:
    """503, 429, timeouts and connect errors are retried; the batch id never changes."""
    logger, fake = make_logger(
        status(503), status(429), RequestTimeout("slow"), ConnectError("down"), max_retries=5
    )
    assert log_and_flush(logger, 10)
    stats = logger.get_stats()
    assert (stats["logs_sent"], stats["retries"], stats["logs_dropped"]) == (10, 4, 0)
    batch_ids = {kw["headers"][BATCH_ID_HEADER] for _, _, kw in fake.calls}
    assert len(fake.calls) == 5
    assert len(batch_ids) == 1


def test_retry_after_is_a_floor_before_the_next_send(make_logger: MakeLogger) -> None:
    """A 429 with Retry-After: 0.3 delays the next attempt by at least 0.3 s."""
    stamps: list[float] = []

    def accept(method: str, path: str, **kw: object) -> FakeResponse:
        stamps.append(time.monotonic())
        return FakeResponse({"accepted": 1, "duplicates": 0})

    logger, _ = make_logger(status(429, retry_after=0.3), accept)
    start = time.monotonic()
    assert log_and_flush(logger, 1)
    assert stamps[0] - start >= 0.29


def test_retries_exhausted_drop_the_batch_once_warned(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a spool, after max_retries the batch is dropped: counted, one warning."""
    logger, _ = make_logger(*[status(500)] * 3, max_retries=2, spool_dir=False)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert not log_and_flush(logger, 4)
    stats = logger.get_stats()
    assert stats["dropped"]["retries_exhausted"] == 4
    assert stats["retries"] == 2
    assert "HTTP 500" in (stats["last_error"] or "")
    assert len([r for r in caplog.records if "could not be delivered" in r.getMessage()]) == 1


def test_unauthorized_is_final_and_warned_once(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """401 is not retried; without a spool the records are dropped as unauthorized, one
    warning naming the key (with one they are held: test_spool_replay.py)."""
    logger, fake = make_logger(
        status(401), status(401), batch_size=1, max_retries=5, spool_dir=False
    )
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert not log_and_flush(logger, 1)
        assert not log_and_flush(logger, 1)
    assert logger.get_stats()["dropped"]["unauthorized"] == 2
    assert len(fake.calls) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "API key" in warnings[0]


def test_other_client_errors_are_final(make_logger: MakeLogger) -> None:
    """A 400 drops the batch as client_error without retrying."""
    logger, fake = make_logger(status(400))
    assert not log_and_flush(logger, 3)
    assert logger.get_stats()["dropped"]["client_error"] == 3
    assert len(fake.calls) == 1


def test_rejected_records_are_dropped_and_the_rest_delivered(make_logger: MakeLogger) -> None:
    """BatchResult: accepted + duplicates are sent, rejected counted under 'rejected'; a
    record that normalizing does not change is not sent again."""
    answer = FakeResponse(
        {"accepted": 3, "duplicates": 1, "rejected": [{"index": 0, "error": "x"}]}
    )
    logger, fake = make_logger(answer)
    assert not log_and_flush(logger, 5)
    stats = logger.get_stats()
    assert (stats["logs_sent"], stats["duplicates"], stats["dropped"]["rejected"]) == (4, 1, 1)
    assert len(fake.calls) == 1


def test_a_rejected_record_with_non_text_keys_is_sent_again_normalized(
    make_logger: MakeLogger,
) -> None:
    """The server rejects metadata={1: 'a'} (unchecked on the fast path): it is sent again,
    once, with text keys and the same id; nothing is counted lost."""
    answer = FakeResponse(
        {"accepted": 1, "duplicates": 0, "rejected": [{"index": 0, "error": "k"}]}
    )
    logger, fake = make_logger(answer)
    logger.log_prompt("odd", "o", metadata={1: "a"})  # type: ignore[dict-item]
    logger.log_prompt("fine", "o")
    assert logger.flush(5)
    stats = logger.get_stats()
    assert (stats["logs_sent"], stats["logs_dropped"]) == (2, 0)
    first, again = (msgspec.msgpack.decode(kw["content"]) for _, _, kw in fake.calls)
    assert [r["metadata"] for r in again] == [{"1": "a"}]
    assert again[0]["id"] == first[0]["id"]


def test_old_backend_falls_back_to_one_json_record_per_request(make_logger: MakeLogger) -> None:
    """404 on the batch path switches to POST /api/logs/prompt-usage, one record each, keyed
    by its id (Idempotency-Key)."""
    logger, fake = make_logger(status(404), FakeResponse({"id": "a"}), FakeResponse({"id": "b"}))
    assert log_and_flush(logger, 2)
    paths = [path for _, path, _ in fake.calls]
    assert paths == [BATCH_PATH, SINGLE_LOG_PATH, SINGLE_LOG_PATH]
    body = msgspec.json.decode(fake.calls[1][2]["content"])
    assert body["input"] == "in 0"
    assert "ts" not in body
    assert body["id"] == fake.calls[1][2]["headers"][IDEMPOTENCY_HEADER]
    assert logger.get_stats()["logs_sent"] == 2
    assert log_and_flush(logger, 1)
    assert fake.calls[-1][1] == SINGLE_LOG_PATH


def test_batch_endpoint_is_tried_again_after_a_while(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404 may be a proxy's passing mistake: the batch endpoint gets another try later."""
    monkeypatch.setattr("banyan._delivery.LEGACY_RECHECK", 0.2)
    logger, fake = make_logger(status(404), FakeResponse({"id": "a"}))
    assert log_and_flush(logger, 1)
    time.sleep(0.25)
    assert log_and_flush(logger, 1)
    assert [path for _, path, _ in fake.calls] == [BATCH_PATH, SINGLE_LOG_PATH, BATCH_PATH]
    assert logger.get_stats()["logs_sent"] == 2


def test_accounting_balances_at_quiescence(make_logger: MakeLogger) -> None:
    """logs_queued == sent + dropped + queued + in flight after mixed outcomes."""
    logger, _ = make_logger(status(400), status(500), status(500), max_retries=1, batch_size=3)
    for i in range(20):
        logger.log_prompt(f"i{i}", "o")
    logger.flush(5)
    s = logger.get_stats()
    assert s["logs_queued"] == 20
    assert s["logs_queued"] == s["logs_sent"] + s["logs_dropped"] + s["queue_size"] + s["in_flight"]


@pytest.mark.parametrize("spool", [True, False])
def test_a_batch_the_server_takes_after_the_shutdown_deadline_counts_once(
    make_logger: MakeLogger, tmp_path: object, spool: bool
) -> None:
    """shutdown() spools (or drops) the batch in flight; its late success is not counted again."""
    gate = threading.Event()

    def held(method: str, path: str, **kw: object) -> FakeResponse:
        gate.wait(10)
        return FakeResponse({"accepted": 3, "duplicates": 0})

    logger, _ = make_logger(held, spool_dir=tmp_path if spool else False)
    for i in range(3):
        logger.log_prompt(f"in {i}", "out")
    logger.shutdown(timeout=0.3)
    gate.set()
    deadline = time.monotonic() + 5
    while logger.get_stats()["delivered_after_shutdown"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = logger.get_stats()
    kept = stats["spooled_pending"] if spool else stats["dropped"]["shutdown"]
    assert (stats["delivered_after_shutdown"], stats["logs_sent"], kept) == (3, 0, 3)
    accounted = stats["logs_sent"] + stats["logs_dropped"] + stats["spooled_pending"]
    assert stats["logs_queued"] == accounted == 3


def wait_for_late(logger: object, count: int) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stats: dict[str, object] = logger.get_stats()  # type: ignore[attr-defined]
        if stats["delivered_after_shutdown"] == count:
            break
        time.sleep(0.01)
    return stats


@pytest.mark.parametrize("spool", [True, False])
def test_a_late_answer_with_rejections_changes_nothing_shutdown_counted(
    make_logger: MakeLogger, tmp_path: object, spool: bool
) -> None:
    """A batch given up at shutdown and then partly rejected is counted once: by shutdown
    (a spooled record's fate is counted when it is replayed)."""
    gate = threading.Event()

    def held(method: str, path: str, **kw: object) -> FakeResponse:
        gate.wait(10)
        return FakeResponse({"accepted": 1, "duplicates": 0,
                             "rejected": [{"index": 1, "error": "bad"}]})  # fmt: skip

    logger, _ = make_logger(held, spool_dir=tmp_path if spool else False)
    for i in range(2):
        logger.log_prompt(f"in {i}", "out")
    logger.shutdown(timeout=0.3)
    gate.set()
    stats = wait_for_late(logger, 1)
    dropped: dict[str, int] = stats["dropped"]  # type: ignore[assignment]
    assert (stats["logs_sent"], dropped["rejected"]) == (0, 0)
    kept = stats["spooled_pending"] if spool else dropped["shutdown"]
    assert kept == 2
    assert stats["logs_queued"] == stats["logs_dropped"] + stats["spooled_pending"]  # type: ignore[operator]


def test_a_batch_given_up_at_shutdown_during_one_by_one_sends_counts_once(
    make_logger: MakeLogger, tmp_path: object
) -> None:
    """Against a 1.0.1 backend records go one request each; shutdown() spools the whole
    batch at its deadline. Neither what the loop sent meanwhile nor the rest it then gives
    up on is counted or spooled again."""

    def slow(method: str, path: str, **kw: object) -> FakeResponse:
        time.sleep(0.1)
        return FakeResponse({})

    steps = [status(404), *[slow] * 5, ConnectError("down")]
    logger, fake = make_logger(*steps, max_retries=0, spool_dir=tmp_path)
    for i in range(10):
        logger.log_prompt(f"in {i}", "out")
    logger.shutdown(timeout=0.25)
    time.sleep(0.6)  # past the five slow sends and the failure
    stats = logger.get_stats()
    assert (stats["logs_sent"], stats["logs_dropped"], stats["spooled_pending"]) == (0, 0, 10)
    assert 0 < stats["delivered_after_shutdown"] == len(fake.calls) - 1 < 10


@pytest.mark.parametrize("timeout", [None, float("inf"), 1e10, -1.0])
def test_flush_and_shutdown_take_any_timeout(
    make_logger: MakeLogger, timeout: float | None
) -> None:
    """None and huge timeouts wait as long as threading can (they raised OverflowError and
    left shutdown half done); a negative one is no wait."""
    logger, _ = make_logger()
    logger.log_prompt("i", "o")
    delivered = logger.flush(timeout)  # no wait at -1: True only if the flusher was quick
    assert delivered or timeout == -1.0
    assert logger.shutdown(timeout) is True
    assert logger.get_stats()["logs_sent"] + logger.get_stats()["spooled"] == 1


def test_a_refused_api_key_is_warned_loudly_once(make_logger: MakeLogger) -> None:
    """401: besides the logged warning, one BanyanWarning reaches a user with no logging."""
    logger, _ = make_logger(status(401), status(401), spool_dir=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert not log_and_flush(logger, 1)
        assert not log_and_flush(logger, 1)
    assert [w.category for w in seen if "check the API key" in str(w.message)] == [BanyanWarning]
    assert logger.get_stats()["last_error"]


def test_one_by_one_retries_after_an_unknown_outcome_count_as_possible_duplicates(
    make_logger: MakeLogger,
) -> None:
    """On the 1.0.1 path a timeout or a 500 may have stored the record: its retry counts in
    possible_duplicates; a refused connection or a 503 was not processed and does not."""
    logger, _ = make_logger(
        status(404), RequestTimeout("slow"), status(500), ConnectError("down"), status(503),
        max_retries=5,
    )  # fmt: skip
    assert log_and_flush(logger, 1)
    stats = logger.get_stats()
    assert (stats["logs_sent"], stats["retries"], stats["possible_duplicates"]) == (1, 4, 2)
