"""before_send sees every kind of record (#16): prompt records, their usage, and scores."""

from __future__ import annotations

from typing import Any

import pytest

import banyan
from banyan.testing import capture

SUBJECT = banyan.PromptData(
    content="c", name="greet", experiment_id="exp_1", experiment_version_id="var_b",
    sticky_key="user_id", sticky_value="ada@example.com",
)  # fmt: skip


def _kinds(event: banyan.LogEvent) -> banyan.LogEvent:
    """A hook that reads every kind's own fields; it type-checks under mypy --strict."""
    if event["kind"] == "score":
        event["metadata"] = {"seen": f"{event['name']}={event['value']} for {event['record_id']}"}
    else:
        cost = event.get("cost")
        event["metadata"] = {"seen": f"{event['input_tokens']} tokens, {cost} usd"}
    return event


def test_the_hook_gets_scores_and_records_told_apart_by_kind() -> None:
    """A score event has kind "score" and its fields; a record's has kind "prompt" and usage."""
    seen: list[dict[str, Any]] = []

    def hook(event: banyan.LogEvent) -> banyan.LogEvent:
        seen.append(dict(event))
        return _kinds(event)

    with capture(before_send=hook) as backend:
        assert banyan.log_prompt("in", "out", input_tokens=12, cost=0.5, record_id="r1")
        assert banyan.log_score("stars", 4, prompt_data=SUBJECT, record_id="r1",
                                metadata={"note": "ok"})  # fmt: skip
        logged = backend.logged
    record, score = seen
    assert (record["kind"], record["input"], record["input_tokens"]) == ("prompt", "in", 12)
    assert score == {
        "kind": "score", "name": "stars", "value": 4.0, "record_id": "r1",
        "experiment_id": "exp_1", "experiment_version_id": "var_b", "sticky_key": "user_id",
        "sticky_value": "ada@example.com", "metadata": {"note": "ok"},
    }  # fmt: skip
    assert [r["metadata"] for r in logged] == [
        {"seen": "12 tokens, 0.5 usd"},
        {"seen": "stars=4.0 for r1"},
    ]


def test_a_hook_may_change_or_drop_a_score_counted_like_a_record() -> None:
    """A score the hook returns None for is dropped as before_send; a changed one is sent."""

    def hook(event: banyan.LogEvent) -> banyan.LogEvent | None:
        if event["kind"] == "score" and event["name"] == "secret":
            return None
        if event["kind"] == "score":
            event["value"] = "changed"
        return event

    with capture(before_send=hook) as backend:
        assert banyan.log_score("secret", True, record_id="r1") is True
        assert banyan.log_score("kept", True, record_id="r1") is True
        assert banyan.flush(5) is True
        logged = backend.logged
        dropped = banyan.get_stats()["dropped"]
    assert [(s["name"], s["value"]) for s in logged] == [("kept", "changed")]
    assert dropped["before_send"] == 1


@pytest.mark.parametrize(
    "change",
    [{"value": float("nan")}, {"value": [1]}, {"name": ""}, {"name": "x" * 129}, {"bogus": 1}],
)
def test_a_hook_that_breaks_a_score_drops_it_as_an_error(change: dict[str, Any]) -> None:
    """A score the hook makes invalid is never sent: dropped as before_send_error."""

    def hook(event: banyan.LogEvent) -> banyan.LogEvent:
        event.update(change)  # type: ignore[typeddict-item]
        return event

    with capture(before_send=hook) as backend:
        with pytest.warns(banyan.BanyanWarning, match="before_send"):
            assert banyan.log_score("stars", 4, record_id="r1") is False
        assert backend.logged == []
        assert banyan.get_stats()["dropped"]["before_send_error"] == 1


def test_a_hook_may_return_a_new_dict_without_kind() -> None:
    """The kind is the record's: a returned dict without (or with another) kind is still sent."""

    def hook(event: banyan.LogEvent) -> Any:
        return {key: value for key, value in event.items() if key != "kind"}

    with capture(before_send=hook) as backend:
        assert banyan.log_prompt("in", "out")
        assert banyan.log_score("stars", 4, record_id="r1")
        logged = backend.logged
    assert [r.get("kind") for r in logged] == [None, "score"]


def test_redactors_scrub_a_scores_metadata_and_leave_its_labels() -> None:
    """redact_pii replaces text in a score's metadata; name, value and subject stay."""
    with capture(before_send=banyan.redact_pii) as backend:
        metadata = {"from": "ada@example.com", "calls": ["+1 415 555 0100"]}
        banyan.log_score("reason", "too_long", prompt_data=SUBJECT, metadata=metadata)
        (score,) = backend.logged
    assert score["metadata"] == {"from": "[email]", "calls": ["[phone]"]}
    assert (score["name"], score["value"]) == ("reason", "too_long")
    assert score["sticky_value"] == "ada@example.com"


def test_a_pseudonymised_subject_still_joins_its_scores() -> None:
    """pseudonymize_subjects gives a record and a score of one subject the same new value."""
    hook = banyan.pseudonymize_subjects(b"our key")
    with capture(before_send=hook) as backend:
        banyan.log_prompt("in", "out", prompt_data=SUBJECT)
        banyan.log_score("accepted", True, prompt_data=SUBJECT)
        other = banyan.PromptData(content="c", name="greet", experiment_id="exp_1",
                                  experiment_version_id="var_b", sticky_key="user_id",
                                  sticky_value="bob@example.com")  # fmt: skip
        banyan.log_score("accepted", True, prompt_data=other)
        banyan.log_score("stars", 3, record_id="r1")
        record, score, bobs, anonymous = backend.logged
    assert record["sticky_value"] == score["sticky_value"] != bobs["sticky_value"]
    assert "ada" not in record["sticky_value"]
    assert anonymous["sticky_value"] is None
    again = banyan.pseudonymize_subjects("our key")({**_event(), "sticky_value": "ada@example.com"})
    assert again["sticky_value"] == record["sticky_value"]
    other_key = banyan.pseudonymize_subjects(b"another key")
    assert (
        other_key({**_event(), "sticky_value": "ada@example.com"})["sticky_value"]
        != (record["sticky_value"])
    )


def _event() -> banyan.ScoreEvent:
    return {"kind": "score", "name": "n", "value": True, "record_id": None,
            "experiment_id": "e", "experiment_version_id": "v", "sticky_key": "user_id",
            "sticky_value": None, "metadata": None}  # fmt: skip
