"""Batch decoding in-process: the fast path keeps every check of the record-by-record one."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from banyan._record import Record
from banyan._wire import JSON, MSGPACK, Rejected, msgpack_array_header
from banyan.server import _ingest
from banyan.server._http import HTTPError

from .helpers import body, record

_one = msgspec.msgpack.Decoder(Record).decode
_raws = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode


def _one_by_one(payload: bytes) -> _ingest.Decoded:
    """What decode answers when it checks each record on its own (the slow path)."""
    records: list[Record | Rejected] = []
    for index, raw in enumerate(raws := _raws(payload)):
        try:
            records.append(_one(raw))
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            records.append(Rejected(index, str(exc)))
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
    # The reason is the decoder's text (msgspec 0.23 reworded it): only its presence is ours.
    assert decoded.rejected[0].error
    assert decoded.count == 599
    _same(decoded, _one_by_one(payload))


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
    assert decoded.values[12] == "p"
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
    optional={field: scalars for field in Record.__struct_fields__[4:]} | {"extra": scalars},
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(maybe_records | scalars, max_size=6), at=st.integers(0, 300))
def test_fast_path_agrees_with_the_record_by_record_path(items: list[Any], at: int) -> None:
    """Any batch, its odd records anywhere among 300 good ones: the same rows and rejections."""
    good: list[Any] = [record(f"g-{i}") for i in range(300)]
    payload = body(good[:at] + items + good[at:])
    _same(_ingest.decode(payload, MSGPACK), _one_by_one(payload))


def test_the_fast_path_struct_mirrors_record() -> None:
    """_Valid has Record's fields in Record's order, so no good record misses the fast path."""
    assert _ingest._Valid.__struct_fields__ == Record.__struct_fields__


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
