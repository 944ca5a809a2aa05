"""The usage fields of a record and the score record: their wire encoding (#18)."""

from __future__ import annotations

import msgspec
import pytest

from banyan._record import SCORE, Record, Score, UsageRecord, encode, record_type, repaired

#: A record as encoded before the usage fields existed (base a5e71a1): a map of these keys.
_BEFORE = (
    b"\x85\xa2id\xa1r\xa2ts\xcb?\xf0\x00\x00\x00\x00\x00\x00\xa5input\xa1i\xa6output\xa1o"
    b"\xa5model\xa1m"
)


def test_a_record_without_usage_encodes_byte_for_byte_as_before() -> None:
    """The usage fields are omitted when unset: old records keep their exact bytes."""
    assert encode(Record(id="r", ts=1.0, input="i", output="o", model="m")) == _BEFORE


def test_usage_fields_travel_under_their_names() -> None:
    """input_tokens, output_tokens, cached_input_tokens and cost are plain map keys."""
    record = UsageRecord(id="r", ts=1.0, input="", output="", input_tokens=12, output_tokens=3,
                         cached_input_tokens=4, cost=0.25)  # fmt: skip
    found = msgspec.msgpack.decode(encode(record))
    assert {k: found[k] for k in ("input_tokens", "output_tokens", "cached_input_tokens")} == {
        "input_tokens": 12, "output_tokens": 3, "cached_input_tokens": 4}  # fmt: skip
    assert found["cost"] == 0.25


def test_a_usage_record_omits_unset_fields_and_refuses_unknown_ones() -> None:
    """UsageRecord keeps Record's settings: unset usage fields absent, unknown keys refused."""
    data = encode(UsageRecord(id="r", ts=1.0, input="", output="", cost=0.5))
    assert set(msgspec.msgpack.decode(data)) == {"id", "ts", "input", "output", "cost"}
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(data.replace(b"cost", b"cozt"), type=UsageRecord)


def test_record_type_picks_the_struct_by_the_fields_present() -> None:
    """A map with a usage field is a UsageRecord; one without keeps Record's bytes."""
    assert record_type({"id": "r", "output_tokens": 1}) is UsageRecord
    assert record_type({"id": "r", "model": "m"}) is Record


def test_repair_keeps_the_usage_fields() -> None:
    """A refused record with usage is repaired (text made valid) without losing its usage."""
    raw = msgspec.msgpack.encode(
        {"id": "r", "ts": 1.0, "input": "i", "output": "o", "metadata": {1: "a"}, "cost": 0.5}
    )
    fixed = repaired(raw)
    assert fixed is not None
    assert msgspec.msgpack.decode(fixed)["metadata"] == {"1": "a"}
    assert msgspec.msgpack.decode(fixed)["cost"] == 0.5


def test_a_score_carries_its_kind_first_and_omits_what_is_unset() -> None:
    """A score encodes as a map whose first key is kind = "score"; unset fields are absent."""
    data = encode(Score(id="s", ts=2.0, name="accepted", value=True, record_id="r"))
    assert data.startswith(b"\x86\xa4kind\xa5score")
    assert msgspec.msgpack.decode(data) == {
        "kind": SCORE, "id": "s", "ts": 2.0, "name": "accepted", "value": True, "record_id": "r"
    }  # fmt: skip


@pytest.mark.parametrize("value", [True, 4.5, 3, "good"])
def test_a_score_value_is_a_boolean_a_number_or_a_category(value: object) -> None:
    """Booleans, numbers and category strings round-trip with their types."""
    score = Score(id="s", ts=2.0, name="n", value=value)  # type: ignore[arg-type]
    back = msgspec.msgpack.decode(encode(score), type=Score)
    assert back.value == value
    assert type(back.value) is (float if type(value) is int else type(value))


def test_a_record_decoder_refuses_a_score() -> None:
    """A Record decoder (an older v2 server) refuses a score: kind is an unknown field."""
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(encode(Score(id="s", ts=1.0, name="n", value=1.0)), type=Record)
