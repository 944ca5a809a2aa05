"""log_score and log_prompt's outcome keywords (#18 item 1), on the caller's side."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from fakes import FakeResponse, MakeLogger
from test_log_prompt import quiet

import banyan
from banyan import _warn
from banyan.testing import capture

SUBJECT = banyan.PromptData(
    content="c", name="greet", version="2", experiment_id="exp_1",
    experiment_version_id="var_b", sticky_key="user_id", sticky_value="u1",
)  # fmt: skip


def ring(logger: banyan.PromptStackLogger) -> list[dict[str, Any]]:
    """What sits in the logger's ring, as maps."""
    return [msgspec.msgpack.decode(item) for item in list(logger._flusher.ring._items)]


def test_a_score_carries_the_subject_and_variant_of_prompt_data(make_logger: MakeLogger) -> None:
    """log_score queues a score record with prompt_data's experiment, variant and subject."""
    logger = quiet(make_logger)
    assert logger.log_score("accepted", True, prompt_data=SUBJECT)
    (score,) = ring(logger)
    assert score["kind"] == "score"
    assert (score["name"], score["value"]) == ("accepted", True)
    assert (score["experiment_id"], score["experiment_version_id"]) == ("exp_1", "var_b")
    assert (score["sticky_key"], score["sticky_value"]) == ("user_id", "u1")


@pytest.mark.parametrize(("value", "sent"), [(True, True), (3, 3.0), (0.5, 0.5), ("good", "good")])
def test_a_score_value_is_a_boolean_a_number_or_a_category(
    make_logger: MakeLogger, value: Any, sent: Any
) -> None:
    """A bool stays a bool, an int travels as a float, a string is a category."""
    logger = quiet(make_logger)
    logger.log_score("rating", value, record_id="r1")
    (score,) = ring(logger)
    assert score["value"] == sent
    assert type(score["value"]) is type(sent)
    assert score["record_id"] == "r1"


@pytest.mark.parametrize(
    ("name", "value", "attribution"),
    [
        ("rating", 1.0, {}),
        ("rating", None, {"record_id": "r"}),
        ("rating", float("nan"), {"record_id": "r"}),
        ("rating", 10**400, {"record_id": "r"}),
        ("rating", "", {"record_id": "r"}),
        ("", 1.0, {"record_id": "r"}),
        (1, 1.0, {"record_id": "r"}),
        ("rating", 1.0, {"record_id": 5}),
        ("rating", 1.0, {"prompt_data": "a prompt"}),
    ],
)
def test_bad_arguments_raise_a_score_error(
    make_logger: MakeLogger, name: Any, value: Any, attribution: dict[str, Any]
) -> None:
    """A bad name, value, id or prompt, or no attribution, is a ScoreError; nothing queued."""
    logger = quiet(make_logger)
    with pytest.raises(banyan.ScoreError):
        logger.log_score(name, value, **attribution)
    assert ring(logger) == []
    assert logger.get_stats()["logs_queued"] == 0


def test_a_score_error_is_a_configuration_error_and_a_value_error() -> None:
    """ScoreError sits under ConfigurationError (a ValueError) in the one tree."""
    assert issubclass(banyan.ScoreError, banyan.ConfigurationError)
    assert issubclass(banyan.ScoreError, ValueError)


def test_a_prompt_outside_an_experiment_skips_the_score(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """Without an experiment subject nor record_id a score is skipped, counted, warned once."""
    logger = quiet(make_logger)
    plain = banyan.PromptData(content="c", name="greet")
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert logger.log_score("accepted", True, prompt_data=plain)
        assert logger.log_score("accepted", False, prompt_data=plain)
    assert ring(logger) == []
    assert logger.get_stats()["logs_skipped"] == 2
    assert len([r for r in caplog.records if "outside an experiment" in r.message]) == 1


def test_scores_follow_their_subjects_sampling_decision() -> None:
    """With sample_rate a subject's scores are kept exactly when its records are."""
    with capture(sample_rate=0.5) as backend:
        for user in range(40):
            prompt = banyan.PromptData(content="c", name="p", experiment_id="e",
                                       experiment_version_id="v", sticky_key="user",
                                       sticky_value=str(user))  # fmt: skip
            banyan.log_prompt("in", "out", prompt_data=prompt)
            banyan.log_score("accepted", True, prompt_data=prompt)
        logged = backend.logged
        dropped = banyan.get_stats()["dropped"]["sampled"]
    records = {r["sticky_value"] for r in logged if "kind" not in r}
    scores = [r for r in logged if r.get("kind") == "score"]
    assert {s["sticky_value"] for s in scores} == records
    assert 0 < len(records) < 40
    assert dropped == 2 * (40 - len(records))
    assert all(s["metadata"]["banyan.sample_rate"] == 0.5 for s in scores)


def test_before_send_sees_scores() -> None:
    """before_send gets each score as an event of kind "score"; what it returns is sent."""
    seen: list[Any] = []

    def hook(event: banyan.LogEvent) -> banyan.LogEvent:
        seen.append(event["kind"])
        event["metadata"] = {"hooked": True}
        return event

    with capture(before_send=hook) as backend:
        banyan.log_score("accepted", True, record_id="r1")
        logged = backend.logged
    assert seen == ["score"]
    assert [(r["name"], r["metadata"]) for r in logged] == [("accepted", {"hooked": True})]


def test_a_disabled_logger_counts_a_score_as_disabled_and_still_checks_it(
    make_logger: MakeLogger,
) -> None:
    """enabled=False: a score is counted as disabled; a bad one still raises ScoreError."""
    logger, fake = make_logger(enabled=False)
    assert logger.log_score("accepted", True, record_id="r1")
    assert logger.get_stats()["dropped"]["disabled"] == 1
    with pytest.raises(banyan.ScoreError):
        logger.log_score("accepted", None, record_id="r1")  # type: ignore[arg-type]
    assert fake.calls == []


def test_the_module_function_logs_through_the_default_logger() -> None:
    """banyan.log_score sends through the configured default logger (blocking delivered)."""
    with capture() as backend:
        assert banyan.log_score("stars", 4, record_id="r9", score_id="s1", blocking=True)
        logged = backend.logged
    assert [(r["id"], r["value"], r["record_id"]) for r in logged] == [("s1", 4.0, "r9")]


def test_the_module_function_before_configure_is_dropped_and_counted() -> None:
    """banyan.log_score before configure() returns False and counts not_configured."""
    assert banyan.log_score("stars", 4, record_id="r9") is False
    assert banyan.get_stats()["dropped"]["not_configured"] == 1


def test_unencodable_score_metadata_is_made_plain(make_logger: MakeLogger) -> None:
    """Score metadata with non-text keys is sent as plain data, not dropped."""
    logger = quiet(make_logger)
    metadata: dict[Any, Any] = {1: object}
    logger.log_score("stars", 4, record_id="r", metadata=metadata)
    (score,) = ring(logger)
    assert list(score["metadata"]) == ["1"]


def test_usage_objects_of_both_providers_become_record_fields(make_logger: MakeLogger) -> None:
    """usage= takes OpenAI- and Anthropic-shaped objects; the keywords override their counts."""
    logger = quiet(make_logger)
    openai = SimpleNamespace(prompt_tokens=10, completion_tokens=5,
                             prompt_tokens_details=SimpleNamespace(cached_tokens=4))  # fmt: skip
    anthropic = SimpleNamespace(input_tokens=3, output_tokens=7, cache_read_input_tokens=2,
                                cache_creation_input_tokens=1)  # fmt: skip
    logger.log_prompt("i", "o", usage=openai, cost=0.01)
    logger.log_prompt("i", "o", usage=anthropic, output_tokens=8)
    first, second = ring(logger)
    assert (first["input_tokens"], first["output_tokens"], first["cached_input_tokens"]) == (
        10, 5, 4)  # fmt: skip
    assert first["cost"] == 0.01
    assert (second["input_tokens"], second["output_tokens"]) == (6, 8)


def test_record_id_becomes_the_records_id(make_logger: MakeLogger) -> None:
    """record_id replaces the generated id; the record stays a plain one without usage."""
    logger = quiet(make_logger)
    logger.log_prompt("i", "o", record_id="answer-1")
    (record,) = ring(logger)
    assert record["id"] == "answer-1"
    assert "input_tokens" not in record


def test_bad_usage_or_record_id_is_warned_once_and_the_record_logged(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad count or id never drops the record: it is logged without it, warned once each."""
    logger = quiet(make_logger)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        for _ in range(2):
            assert logger.log_prompt("i", "o", input_tokens=-1, record_id="x" * 200)
    records = ring(logger)
    assert len(records) == 2
    assert all("input_tokens" not in r and r["id"] != "x" * 200 for r in records)
    assert len([r for r in caplog.records if "input_tokens" in r.message]) == 1
    assert len([r for r in caplog.records if "record_id" in r.message]) == 1


@pytest.mark.parametrize(
    ("argument", "bad"), [("duration_ms", "fast"), ("input_tokens", "x"), ("cost", "y")]
)
def test_a_wrongly_typed_outcome_is_warned_once_by_name_and_the_record_logged(
    make_logger: MakeLogger, argument: str, bad: Any
) -> None:
    """duration_ms="fast", input_tokens="x", cost="y": the record is logged without it, and a
    BanyanWarning naming the argument is issued once."""
    _warn.forget()
    logger = quiet(make_logger)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        for _ in range(2):
            assert logger.log_prompt("i", "o", **{argument: bad})
    [warning] = [w for w in warned if w.category is banyan.BanyanWarning]
    assert argument in str(warning.message)
    records = ring(logger)
    assert len(records) == 2
    assert all(r.get(argument) is None for r in records)
    _warn.forget()


def test_outcome_keywords_survive_the_slow_path(make_logger: MakeLogger) -> None:
    """Arguments of odd types take the slow path with their usage and record id."""
    logger = quiet(make_logger)
    logger.log_prompt("i", "o", metadata=SimpleNamespace(a=1), input_tokens=3,  # type: ignore[arg-type]
                      record_id="r")  # fmt: skip
    (record,) = ring(logger)
    assert (record["id"], record["input_tokens"]) == ("r", 3)


def test_the_module_log_prompt_passes_the_outcome_keywords() -> None:
    """banyan.log_prompt takes the same outcomes as the method, each in its place."""
    usage = {"prompt_tokens": 9, "completion_tokens": 9}
    with capture() as backend:
        banyan.log_prompt("i", "o", usage=usage, input_tokens=1, output_tokens=2,
                          cached_input_tokens=1, cost=0.5, record_id="r")  # fmt: skip
        logged = backend.logged
    fields = ("id", "input_tokens", "output_tokens", "cached_input_tokens", "cost")
    assert [tuple(r[name] for name in fields) for r in logged] == [("r", 1, 2, 1, 0.5)]


def test_a_score_an_older_server_rejects_by_index_is_counted_rejected(
    make_logger: MakeLogger,
) -> None:
    """A batch answer rejecting the score by index (a server before #18: unknown field kind)
    counts it as rejected; the record beside it is delivered."""
    answer = FakeResponse({"accepted": 1, "duplicates": 0,
                           "rejected": [{"index": 1, "error": "unknown field kind"}]})  # fmt: skip
    logger, fake = make_logger(answer, background_thread=False, spool_dir=False)
    logger.log_prompt("i", "o", record_id="r1")
    logger.log_score("accepted", True, record_id="r1")
    assert logger.flush(timeout=5) is False
    stats = logger.get_stats()
    assert (stats["logs_sent"], stats["dropped"]["rejected"], stats["logs_queued"]) == (1, 1, 2)
    assert len(fake.calls) == 1


def test_an_unknown_outcome_keyword_is_refused_by_the_call_like_1_0_1(
    make_logger: MakeLogger,
) -> None:
    """A misspelt keyword is Python's TypeError at the call (as in 1.0.1; mypy flags it): no
    record is made, nothing counted. (The outcomes are parameters: no **kwargs dict per call.)"""
    logger = quiet(make_logger)
    extra: dict[str, Any] = {"usage_": 3}
    with pytest.raises(TypeError):
        logger.log_prompt("i", "o", **extra)
    with pytest.raises(TypeError):
        banyan.log_prompt("i", "o", **extra)
    assert ring(logger) == []
    assert logger.get_stats()["logs_queued"] == 0
