"""log_prompt's slow paths, each pinned where a planted bug went unseen (mutants of
_slowpath.py, #21)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from fakes import MakeLogger
from test_log_prompt import queued, quiet

from banyan._delivery import MAX_RECORD_BYTES


class Unshowable:
    """An argument whose text cannot be made."""

    def __str__(self) -> str:
        raise ValueError("no text for you")


METADATA = (
    'banyan: metadata is not a mapping (a int); such metadata is logged as {"value": metadata}'
)
PROMPT = (
    "banyan: prompt_data is not a prompt (a int); such records are logged without prompt fields"
)


@pytest.mark.parametrize(("odd", "warning"), [("metadata", METADATA), ("prompt_data", PROMPT)])
def test_an_odd_argument_is_warned_about_and_no_other(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture, odd: str, warning: str
) -> None:
    """Metadata that is no mapping, or prompt_data that is no prompt, is warned about once
    naming its type; the other argument, left out, is not."""
    logger = quiet(make_logger)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        for _ in range(2):
            assert logger.log_prompt("i", "o", **{odd: 7})  # type: ignore[arg-type]
    assert caplog.messages == [warning]


def test_odd_arguments_are_logged_plain(make_logger: MakeLogger) -> None:
    """Odd metadata is logged as {"value": ...}, odd prompt_data left out; texts, duration
    and all are kept."""
    logger = quiet(make_logger)
    odd: Any = 7
    assert logger.log_prompt(42, 43, prompt_data=odd, metadata=odd, duration_ms=1.5)
    [record] = queued(logger)
    assert (record.input, record.output, record.prompt_id) == ("42", "43", None)
    assert (record.metadata, record.duration_ms) == ({"value": 7}, 1.5)


def test_an_argument_without_text_is_an_encode_error_with_its_reason(
    make_logger: MakeLogger,
) -> None:
    """An argument whose text cannot be made drops the record as encode_error, its reason
    kept as last_error."""
    logger = quiet(make_logger)
    assert logger.log_prompt(Unshowable(), "o") is False
    stats = logger.get_stats()
    assert (stats["dropped"]["encode_error"], stats["last_error"]) == (1, "no text for you")


def test_a_blocking_log_with_odd_arguments_is_still_sent_at_once(make_logger: MakeLogger) -> None:
    """blocking=True survives the slow path: the record made plain is sent before the call
    returns."""
    logger, fake = make_logger(spool_dir=False, background_thread=False)
    odd: Any = 7
    assert logger.log_prompt("i", "o", prompt_data=odd, blocking=True)
    assert len(fake.calls) == 1
    assert logger.get_stats()["logs_sent"] == 1


def test_a_disabled_logger_counts_each_call_as_queued_and_dropped(
    make_logger: MakeLogger,
) -> None:
    """enabled=False: each log_prompt is counted in logs_queued and dropped as disabled."""
    logger, _ = make_logger(enabled=False)
    assert logger.log_prompt("i", "o")
    stats = logger.get_stats()
    assert (stats["logs_queued"], stats["dropped"]["disabled"]) == (1, 1)


def test_a_record_over_the_servers_limit_is_dropped_with_its_size(
    make_logger: MakeLogger,
) -> None:
    """A record larger than the server takes is dropped as too_large, its size in last_error."""
    logger = quiet(make_logger)
    assert logger.log_prompt("x" * (MAX_RECORD_BYTES + 1), "o") is False
    stats = logger.get_stats()
    assert stats["dropped"]["too_large"] == 1
    assert re.fullmatch(
        rf"a \d+ byte record is over the server's limit of {MAX_RECORD_BYTES} bytes",
        str(stats["last_error"]),
    )
