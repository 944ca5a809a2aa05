"""Batch decoding in-process: the fast path keeps every check of the record-by-record one."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from banyan._record import Record, Score, UsageRecord
from banyan._wire import JSON, MSGPACK, Rejected, msgpack_array_header
from banyan.server import _ingest, _rules
from banyan.server._http import HTTPError
from banyan.server._undecodable import NOT_UTF8, undecodable

from .helpers import body, record

_one = msgspec.msgpack.Decoder(UsageRecord).decode
_raws = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode


def _one_by_one(payload: bytes) -> _ingest.Decoded:
    """What decode answers when it checks each record on its own (the slow path)."""
    records: list[Record | Score | Rejected] = []
    for index, raw in enumerate(raws := _raws(payload)):
        try:
            records.append(_one(raw))
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            records.append(Rejected(index, undecodable(exc, raw, MSGPACK)))
    return _ingest.to_rows(records, raws)


def _sql(value: Any) -> Any:
    """A value as SQLite stores it: NaN binds as NULL, like None."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _same(a: _ingest.Decoded, b: _ingest.Decoded) -> None:
    assert list(a.indexes) == list(b.indexes)
    assert a.rejected == b.rejected
    assert list(map(_sql, a.values)) == list(map(_sql, b.values))


def _bad_utf8(rec: Record, field: str) -> bytes:
    """``rec`` encoded with the string ``"@@"`` in ``field`` turned into invalid UTF-8."""
    encoded = msgspec.msgpack.encode(rec)
    assert encoded.count(b"\xa2@@") == 1, field
    return encoded.replace(b"\xa2@@", b"\xa2\xff\xfe")


@pytest.mark.parametrize(
    "fields",
    [
        {"input": "@@"},
        {"output": "@@"},
        {"prompt_id": "@@"},
        {"model": "@@"},
        {"sticky_key": "@@"},
        {"sticky_value": "@@"},
        {"metadata": {"@@": 1}},
        {"metadata": {"k": ["x", {"deep": "@@"}]}},
    ],
)
def test_invalid_utf8_in_any_string_rejects_its_record(fields: dict[str, Any]) -> None:
    """Invalid UTF-8 in any string, nested metadata included, rejects only that record."""
    good = [msgspec.msgpack.encode(record(f"u-{i}")) for i in range(600)]
    good[300] = _bad_utf8(record("u-bad", **fields), next(iter(fields)))
    payload = msgpack_array_header(600) + b"".join(good)
    decoded = _ingest.decode(payload, MSGPACK)
    assert [r.index for r in decoded.rejected] == [300]
    assert decoded.rejected[0].error == NOT_UTF8
    assert decoded.count == 599
    _same(decoded, _one_by_one(payload))


def test_invalid_utf8_in_a_json_record_rejects_it_with_our_reason() -> None:
    """Invalid UTF-8 in a JSON string rejects only that record, with our reason (#13)."""
    good = msgspec.json.encode(record("u-1")).decode()
    bad = msgspec.json.encode(record("u-bad", input="@@")).replace(b"@@", b"\xff\xfe")
    payload = b"[" + good.encode() + b"," + bad + b"]"
    decoded = _ingest.decode(payload, JSON)
    assert [(r.index, r.error) for r in decoded.rejected] == [(1, NOT_UTF8)]
    assert decoded.count == 1


def test_explicit_nulls_and_integers_decode_as_the_record_path_does() -> None:
    """Explicit nulls bind as NULL, integer ts/duration as floats, on either path."""
    items: list[Any] = [
        {"id": "n-1", "ts": 1, "input": "", "output": "", "model": None, "duration_ms": 3},
        {"id": "n-2", "ts": 2.5, "input": "", "output": "", "prompt_name": "p", "metadata": None},
    ]
    payload = body(items)
    decoded = _ingest.decode(payload, MSGPACK)
    assert decoded.values[:2] == ["n-1", 1.0]
    assert decoded.values[5] is None
    assert decoded.values[6] == 3.0
    assert decoded.values[_rules.COLUMNS + 2] == "p"
    _same(decoded, _one_by_one(payload))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=4),
)
maybe_records = st.fixed_dictionaries(
    {"id": st.text(max_size=3) | st.just("x" * 129), "ts": st.floats() | st.integers(0, 9),
     "input": st.text(max_size=3), "output": st.text(max_size=3)},
    optional={field: scalars for field in UsageRecord.__struct_fields__[4:]} | {"extra": scalars},
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(maybe_records | scalars, max_size=6), at=st.integers(0, 300))
def test_fast_path_agrees_with_the_record_by_record_path(items: list[Any], at: int) -> None:
    """Any batch, its odd records anywhere among 300 good ones: the same rows and rejections."""
    good: list[Any] = [record(f"g-{i}") for i in range(300)]
    payload = body(good[:at] + items + good[at:])
    _same(_ingest.decode(payload, MSGPACK), _one_by_one(payload))


def test_the_fast_path_struct_mirrors_record() -> None:
    """_Valid has UsageRecord's fields in its order, so no good record misses the fast path."""
    assert _ingest._Valid.__struct_fields__ == UsageRecord.__struct_fields__


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (MSGPACK, msgpack_array_header(2_000_000) + b"\xc0" * 2_000_000),
        (JSON, b"[" + b"0," * 2_000_000 + b"0]"),
    ],
)
def test_too_many_elements_are_413_without_holding_them(kind: str, payload: bytes) -> None:
    """Past MAX_BATCH_RECORDS elements, decode answers 413 having held no more than the limit."""
    tracemalloc.start()
    try:
        with pytest.raises(HTTPError) as refused:
            _ingest.decode(payload, kind)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.status == 413
    assert peak < 8 * 1024 * 1024


def test_record_nested_too_deeply_to_encode_is_rejected_by_index() -> None:
    """A decoded record whose metadata is too deep to re-encode is rejected, not a crash."""
    deep: dict[str, Any] = {}
    for _ in range(5000):
        deep = {"k": deep}
    decoded = _ingest.to_rows([record("ok"), record("deep", metadata=deep)])
    assert [r.index for r in decoded.rejected] == [1]
    assert decoded.count == 1


def _repeating(key: str, value: Any, rid: str = "dup") -> bytes:
    """A record map whose ``key`` appears twice, the second time with ``value``."""
    first = msgspec.msgpack.encode(msgspec.to_builtins(record(rid, model="first")))
    assert 0x80 <= first[0] < 0x8F
    return bytes([first[0] + 1]) + first[1:] + msgspec.msgpack.encode([key, value])[1:]


def _batch(items: list[bytes]) -> bytes:
    return msgpack_array_header(len(items)) + b"".join(items)


@pytest.mark.parametrize("at", [0, 150, 299])
@pytest.mark.parametrize(("key", "value"), [("id", "other"), ("input", "again"), ("model", "m")])
@pytest.mark.parametrize("odd", [False, True])
def test_repeated_key_rejects_its_record_by_index(key: str, value: Any, at: int, odd: bool) -> None:
    """A record map with a key twice is rejected by index (fast and slow path), not stored."""
    items = [msgspec.msgpack.encode(record(f"g-{i}")) for i in range(300)]
    items[at] = _repeating(key, value)
    if odd:  # a record the fast path refuses: the whole batch takes the slow one
        items[(at + 1) % 300] = msgspec.msgpack.encode({"id": "x"})
    decoded = _ingest.decode(_batch(items), MSGPACK)
    repeated = [r for r in decoded.rejected if r.index == at]
    assert len(repeated) == 1
    assert key in repeated[0].error
    assert at not in decoded.indexes
    assert "dup" not in decoded.values
    assert "other" not in decoded.values


def test_repeated_key_in_a_wide_map_is_rejected() -> None:
    """A map of 16 entries (map 16 header) that repeats a key is rejected too."""
    fields = msgspec.to_builtins(record("wide", model="m", version="1", branch_name="b"))
    pairs = b"".join(msgspec.msgpack.encode([k, v])[1:] for k, v in fields.items())
    pairs += msgspec.msgpack.encode(["id", "x"])[1:] * (16 - len(fields))
    decoded = _ingest.decode(_batch([b"\xde\x00\x10" + pairs]), MSGPACK)
    assert [r.index for r in decoded.rejected] == [0]


def test_repeated_key_in_json_is_rejected_by_index() -> None:
    """A JSON record object with a key twice is rejected by index; its neighbours are stored."""
    good = '{"id": "a", "ts": 1, "input": "", "output": ""}'
    bad = '{"id": "b", "ts": 1, "input": "", "output": "", "id": "c", "metadata": {"k": 1}}'
    decoded = _ingest.decode(f"[{good}, {bad}, {good.replace('a', 'd')}]".encode(), JSON)
    assert [r.index for r in decoded.rejected] == [1]
    assert "'id'" in decoded.rejected[0].error
    assert list(decoded.indexes) == [0, 2]


def test_repeated_key_in_nested_metadata_is_kept() -> None:
    """Only the record's own keys count: metadata is stored as sent, repeats and all."""
    payload = b'[{"id": "n", "ts": 1, "input": "", "output": "", "metadata": {"k": 1, "k": 2}}]'
    assert list(_ingest.decode(payload, JSON).indexes) == [0]


def test_batches_without_repeated_keys_keep_the_fast_path() -> None:
    """The repeat check sends no good batch (explicit nulls included) down the slow path."""
    items = [record(f"f-{i}", model="m", metadata={"k": i}) for i in range(300)]
    nulls = [{**msgspec.to_builtins(record(f"n-{i}")), "model": None} for i in range(300)]
    for payload in (body(items), body(nulls)):
        assert _ingest._valid_batch(payload, _raws(payload)) is not None


def _usage_record(rid: str, **fields: Any) -> UsageRecord:
    return UsageRecord(**{**msgspec.structs.asdict(record(rid)), **fields})


def test_usage_records_keep_the_fast_path_and_their_columns() -> None:
    """Records with usage (map16 headers) mixed with plain ones decode on the fast path."""
    items = [_usage_record(f"u-{i}", input_tokens=i, cost=0.5) if i % 2 else record(f"p-{i}")
             for i in range(300)]  # fmt: skip
    payload = body(items)
    assert _ingest._valid_batch(payload, _raws(payload)) is not None
    decoded = _ingest.decode(payload, MSGPACK)
    at = _rules.COLUMN_NAMES.index
    row = decoded.values[_rules.COLUMNS : 2 * _rules.COLUMNS]
    assert [_sql(row[at(n)]) for n in ("input_tokens", "output_tokens", "cost")] == [1, None, 0.5]
    assert math.isnan(decoded.values[at("input_tokens")])
    _same(decoded, _one_by_one(payload))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"input_tokens": -1}, "input_tokens"), ({"cost": -0.5}, "cost"),
     ({"cost": math.inf}, "cost"), ({"output_tokens": 2**63}, "output_tokens")],
)  # fmt: skip
def test_bad_usage_rejects_its_record_by_index(fields: dict[str, Any], reason: str) -> None:
    """A negative or out-of-range token count or cost rejects only its record."""
    items: list[Any] = [record(f"g-{i}") for i in range(3)]
    items[1] = {**msgspec.to_builtins(record("bad")), **fields}
    decoded = _ingest.decode(body(items), MSGPACK)
    assert [r.index for r in decoded.rejected] == [1]
    assert reason in decoded.rejected[0].error
    assert list(decoded.indexes) == [0, 2]


def _score(sid: str, value: Any, **fields: Any) -> Score:
    attribution = {"experiment_id": "e", "experiment_version_id": "v", "sticky_value": "u"}
    return Score(**{"id": sid, "ts": 5.0, "name": "accepted", "value": value,
                    **attribution, **fields})  # fmt: skip


@pytest.mark.parametrize("kind", [MSGPACK, JSON])
def test_scores_decode_beside_records_into_score_rows(kind: str) -> None:
    """Score elements become score rows (number, boolean, category); records stay records."""
    items = [record("r-0"), _score("s-1", True), _score("s-2", 4.0, name="rating"),
             _score("s-3", "good", name="verdict", record_id="r-0"), record("r-4")]  # fmt: skip
    payload = body(items) if kind == MSGPACK else msgspec.json.encode(items)
    decoded = _ingest.decode(payload, kind)
    assert list(decoded.indexes) == [0, 4]
    assert decoded.score_indexes == [1, 2, 3]
    assert decoded.count == 5
    rows = [decoded.scores[i : i + _rules.SCORE_COLUMNS - 1]
            for i in range(0, len(decoded.scores), _rules.SCORE_COLUMNS)]  # fmt: skip
    assert [tuple(map(_sql, row[2:7])) for row in rows] == [
        ("accepted", "boolean", 1.0, None, None),
        ("rating", "number", 4.0, None, None),
        ("verdict", "category", None, "good", "r-0"),
    ]
    assert [row[9] for row in rows] == ["u", "u", "u"]
    blob = decoded.scores[_rules.SCORE_COLUMNS - 1]
    assert msgspec.msgpack.decode(blob, type=Score) == items[1]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"kind": "score", "id": "s", "ts": 1.0, "name": "n", "value": 1.0}, "record_id"),
        (_score("s", math.nan), "finite"),
        (_score("s", ""), "category"),
        (_score("s", 1.0, name=""), "name"),
        (_score("s", [1]), ""),
        ({"kind": "vote", "id": "s", "ts": 1.0}, "kind"),
        ({**msgspec.to_builtins(_score("s", 1.0)), "colour": "red"}, "colour"),
    ],
)
def test_a_bad_score_is_rejected_by_index(item: Any, reason: str) -> None:
    """A score without attribution, with a bad value or name, or an unknown kind: by index."""
    raw = msgspec.msgpack.encode(item) if isinstance(item, Score) else None
    items: list[Any] = [
        record("a"),
        item if raw is None else msgspec.to_builtins(item),
        record("b"),
    ]
    decoded = _ingest.decode(body(items), MSGPACK)
    assert [r.index for r in decoded.rejected] == [1]
    assert reason in decoded.rejected[0].error
    assert list(decoded.indexes) == [0, 2]


def test_a_json_record_without_usage_is_stored_as_the_client_encodes_it() -> None:
    """Re-encoded from JSON, a record without usage keeps Record's map (fixmap header)."""
    plain, used = record("j-1", model="m"), _usage_record("j-2", cost=0.25)
    decoded = _ingest.decode(msgspec.json.encode([plain, used]), JSON)
    blobs = decoded.values[_rules.COLUMNS - 1 :: _rules.COLUMNS]
    assert bytes(blobs[0]) == msgspec.msgpack.encode(plain)
    assert bytes(blobs[1]) == msgspec.msgpack.encode(used)
