"""The built-in redactors: what each one replaces and what it leaves."""

from __future__ import annotations

from typing import Any

import pytest

import banyan


def _event(text: str, metadata: dict[str, Any] | None = None) -> banyan.PromptEvent:
    return {"kind": "prompt", "input": text, "output": text, "prompt_id": "p-1",
            "prompt_name": "a@b.co", "version": None, "branch_name": None, "model": "gpt-4",
            "metadata": metadata,
            "duration_ms": None, "experiment_id": None, "experiment_version_id": None,
            "sticky_key": None, "sticky_value": None}  # fmt: skip


CAUGHT = [
    (banyan.redact_emails, "mail ada.l+x@mail.example.co.uk now", "mail [email] now"),
    (banyan.redact_card_numbers, "card 4111 1111 1111 1111.", "card [card]."),
    (banyan.redact_card_numbers, "card 5500-0000-0000-0004", "card [card]"),
    (banyan.redact_card_numbers, "4012888888881881", "[card]"),
    (banyan.redact_phone_numbers, "call +1 415 555 0100", "call [phone]"),
    (banyan.redact_phone_numbers, "call (415) 555-0100 today", "call [phone] today"),
    (banyan.redact_phone_numbers, "tel +44 20 7946 0958", "tel [phone]"),
    (banyan.redact_phone_numbers, "tel 415.555.0100", "tel [phone]"),
    (banyan.redact_secrets, "key sk-proj-abcdefghijklmnopqrstuvwx1234", "key [secret]"),
    (banyan.redact_secrets, "key sk-ant-api03-abcdefghijklmnopqrstu", "key [secret]"),
    (banyan.redact_secrets, "psk_live_0123456789", "[secret]"),
    (banyan.redact_secrets, "ghp_" + "a" * 36, "[secret]"),
    (banyan.redact_secrets, "AKIAIOSFODNN7EXAMPLE", "[secret]"),
    (banyan.redact_secrets, "xoxb-1234567890-abcdef", "[secret]"),
    (banyan.redact_secrets, "Authorization: Bearer abc.DEF-123_xyz=",
     "Authorization: Bearer [secret]"),
    (banyan.redact_secrets, "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig-nature", "t [secret]"),
]  # fmt: skip

LEFT = [
    (banyan.redact_emails, "an @mention and user@localhost"),
    (banyan.redact_card_numbers, "card 4111 1111 1111 1112 fails Luhn"),
    (banyan.redact_card_numbers, "order 1234567890"),
    (banyan.redact_phone_numbers, "on 2024-01-15 at 10:30, version 1.2.3"),
    (banyan.redact_phone_numbers, "ip 192.168.1.100, order 123456789, room 5550100"),
    (banyan.redact_secrets, "a sk-short key, task-1234, the word Bearer alone"),
]


@pytest.mark.parametrize(("redactor", "text", "expected"), CAUGHT)
def test_redactor_replaces_what_it_is_for(redactor: Any, text: str, expected: str) -> None:
    """Each redactor replaces its kind of value in input and output."""
    event = redactor(_event(text))
    assert (event["input"], event["output"]) == (expected, expected)


@pytest.mark.parametrize(("redactor", "text"), LEFT)
def test_redactor_leaves_lookalikes(redactor: Any, text: str) -> None:
    """Text that only resembles a value (dates, versions, ids, bad checksums) is kept."""
    assert redactor(_event(text))["input"] == text


def test_redactors_reach_nested_metadata_and_leave_identifiers() -> None:
    """Strings inside metadata dicts and lists are redacted; keys and prompt fields are not."""
    event = banyan.redact_pii(_event("x", {"a@b.co": {"to": ["ada@example.com", 3]}}))
    assert event["metadata"] == {"a@b.co": {"to": ["[email]", 3]}}
    assert event["kind"] == "prompt"
    assert event["prompt_name"] == "a@b.co"


def test_redact_pii_applies_every_redactor() -> None:
    """redact_pii catches e-mails, cards, phones and secrets in one pass."""
    text = "ada@example.com 4111111111111111 +1 415 555 0100 psk_live_0123456789"
    event = banyan.redact_pii(_event(text))
    assert event["kind"] == "prompt"
    assert event["input"] == "[email] [card] [phone] [secret]"


@pytest.mark.parametrize(("redactor", "text", "expected"), CAUGHT)
def test_redactor_scrubs_a_scores_metadata(redactor: Any, text: str, expected: str) -> None:
    """On a score event each redactor replaces in metadata and leaves name, value, subject."""
    event: banyan.LogEvent = {
        "kind": "score", "name": "reason", "value": text, "record_id": None,
        "experiment_id": "e", "experiment_version_id": "v", "sticky_key": "user_id",
        "sticky_value": text, "metadata": {"note": [text]},
    }  # fmt: skip
    scrubbed = redactor(event)
    assert scrubbed["metadata"] == {"note": [expected]}
    assert (scrubbed["name"], scrubbed["value"], scrubbed["sticky_value"]) == ("reason", text, text)
