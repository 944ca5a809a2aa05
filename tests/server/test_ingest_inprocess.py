"""Batch bodies in-process: media types, decompression limits, array limits, rows by index.

These call banyan.server._ingest directly, so `make mutate` sees them (the server
subprocess tests exercise the same code out of mutmut's sight).
"""

from __future__ import annotations

import gzip
import math
import sys
import tracemalloc
import zlib
from typing import Any

import msgspec
import pytest

from banyan._record import MAX_ID_LENGTH, Record, encode
from banyan._wire import JSON, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MSGPACK, Rejected
from banyan.server import _ingest, _rules
from banyan.server._http import HTTPError
from banyan.server._undecodable import NOT_UTF8, TOO_DEEP, undecodable

from .helpers import body, record

zstandard = pytest.importorskip("zstandard")

#: Every optional field of a record set, so each column has a value to land in.
FULL: dict[str, Any] = {
    "prompt_id": "pid",
    "prompt_name": "pname",
    "version": "v3",
    "branch_name": "main",
    "model": "m1",
    "metadata": {"k": 1},
    "duration_ms": 12.5,
    "experiment_id": "exp",
    "experiment_version_id": "expv",
    "sticky_key": "user",
    "sticky_value": "u42",
}


def _refused(call: Any, *args: Any) -> HTTPError:
    with pytest.raises(HTTPError) as refused:
        call(*args)
    return refused.value


def _sql(values: list[Any]) -> list[Any]:
    """Values as SQLite binds them: NaN is NULL, a bytearray is a blob (read as its map)."""
    return [_bound(v) for v in values]


def _bound(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    # A record's MessagePack, as the map it holds: a JSON record is re-encoded, and
    # any encoding of the same map is as good.
    return msgspec.msgpack.decode(v) if isinstance(v, bytearray) else v


def _row(r: Record) -> list[Any]:
    """The columns we promise for a record: id, ts, seven indexed fields, NULL in any column
    a Record has no field for, then its MessagePack."""
    unfilled = [None] * (_rules.COLUMNS - 10)
    return [
        r.id, r.ts, r.prompt_name, r.version, r.branch_name, r.model, r.duration_ms,
        r.experiment_id, r.experiment_version_id, *unfilled, msgspec.to_builtins(r),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("application/msgpack", MSGPACK),
        ("application/x-msgpack", MSGPACK),
        ("application/vnd.msgpack", MSGPACK),
        (" Application/MsgPack ; charset=x; q=1", MSGPACK),
        ("application/json", JSON),
        ("APPLICATION/JSON; charset=utf-8; q=1", JSON),
    ],
)
def test_media_type_reads_the_type_before_parameters_in_any_case(header: str, kind: str) -> None:
    """media_type names the format of a Content-Type, ignoring case, spaces and parameters."""
    assert _ingest.media_type(header) == kind


@pytest.mark.parametrize(
    "header", ["text/plain", "", "application/json-seq", "json; application/json"]
)
def test_media_type_refuses_other_types_with_415(header: str) -> None:
    """Any other Content-Type is 415, naming the header and the two formats we take."""
    error = _refused(_ingest.media_type, header)
    assert (error.status, error.message) == (
        415,
        f"unsupported Content-Type {header!r}; use {MSGPACK} or {JSON}",
    )


@pytest.mark.parametrize("encoding", ["", "identity", " Identity "])
def test_identity_encoding_returns_the_body_as_it_is(encoding: str) -> None:
    """No Content-Encoding (or identity) hands the body back untouched, whatever its size."""
    raw = b"\x1f\x8b not gzip at all"
    assert _ingest.decompress(raw, encoding, limit=3) is raw


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", " GZIP "])
def test_gzip_body_is_inflated(encoding: str) -> None:
    """gzip and x-gzip, in any case, are inflated."""
    assert _ingest.decompress(gzip.compress(b"hello" * 100), encoding) == b"hello" * 100


@pytest.mark.parametrize("encoding", ["zstd", " ZSTD"])
def test_zstd_body_is_decompressed(encoding: str) -> None:
    """zstd, in any case, is decompressed."""
    packed = zstandard.ZstdCompressor().compress(b"hello" * 100)
    assert _ingest.decompress(packed, encoding) == b"hello" * 100


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, zstd"])
def test_other_encodings_are_415(encoding: str) -> None:
    """Any other Content-Encoding is 415, naming it and the three we take."""
    error = _refused(_ingest.decompress, b"x", encoding)
    assert (error.status, error.message) == (
        415,
        f"unsupported Content-Encoding {encoding.strip().lower()!r}; use zstd, gzip or none",
    )


def _members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(part) for part in parts)


def test_every_gzip_member_is_inflated_and_joined() -> None:
    """A gzip body of several members (RFC 1952, 2.2) inflates to all of them in order."""
    assert _ingest.decompress(_members(b"ab", b"", b"cd", b"e"), "gzip") == b"abcde"


def test_gzip_members_up_to_the_limit_are_taken_and_one_more_is_413() -> None:
    """MAX_GZIP_MEMBERS members inflate; one more is 413 with our reason."""
    most = _ingest.MAX_GZIP_MEMBERS
    assert _ingest.decompress(_members(*[b"x"] * most), "gzip") == b"x" * most
    error = _refused(_ingest.decompress, _members(*[b"x"] * (most + 1)), "gzip")
    assert (error.status, error.message) == (413, f"a gzip body holds at most {most} members")


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
@pytest.mark.parametrize("split", [False, True])
def test_decompressed_size_is_bounded_by_the_limit_exactly(encoding: str, split: bool) -> None:
    """Output of exactly ``limit`` bytes is taken, one byte more is 413, over every member/frame."""
    limit = 1000

    def pack(size: int) -> bytes:
        halves = [b"a" * (size // 2), b"b" * (size - size // 2)] if split else [b"a" * size]
        if encoding == "gzip":
            return _members(*halves)
        return b"".join(zstandard.ZstdCompressor().compress(half) for half in halves)

    assert len(_ingest.decompress(pack(limit), encoding, limit)) == limit
    error = _refused(_ingest.decompress, pack(limit + 1), encoding, limit)
    assert (error.status, error.message) == (413, "decompressed body exceeds the 1000 byte limit")


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_the_default_limit_is_max_batch_bytes(encoding: str) -> None:
    """Without a limit, MAX_BATCH_BYTES decompressed bytes are taken and one more is 413."""
    pack = gzip.compress if encoding == "gzip" else zstandard.ZstdCompressor().compress
    assert len(_ingest.decompress(pack(bytes(MAX_BATCH_BYTES)), encoding)) == MAX_BATCH_BYTES
    error = _refused(_ingest.decompress, pack(bytes(MAX_BATCH_BYTES + 1)), encoding)
    assert (error.status, error.message) == (
        413,
        f"decompressed body exceeds the {MAX_BATCH_BYTES} byte limit",
    )


@pytest.mark.parametrize(
    "raw", [b"not gzip", gzip.compress(b"abc") + b"trailing garbage"], ids=["junk", "trailing"]
)
def test_invalid_gzip_is_400(raw: bytes) -> None:
    """A body (or a member after the first) that is not gzip is 400, with our prefix."""
    error = _refused(_ingest.decompress, raw, "gzip")
    assert error.status == 400
    assert error.message.startswith("body is not valid gzip: ")


@pytest.mark.parametrize("raw", [b"", gzip.compress(b"abc" * 100)[:-6]], ids=["empty", "cut"])
def test_truncated_gzip_is_400(raw: bytes) -> None:
    """A gzip stream that ends before its trailer is 400 'truncated stream'."""
    error = _refused(_ingest.decompress, raw, "gzip")
    assert (error.status, error.message) == (400, "body is not valid gzip: truncated stream")


def test_invalid_zstd_is_400() -> None:
    """A body that is not zstd is 400, with our prefix."""
    error = _refused(_ingest.decompress, b"not zstd at all", "zstd")
    assert error.status == 400
    assert error.message.startswith("body is not valid zstd: ")


def test_zstd_without_the_module_is_415(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server without zstandard answers 415 and says what to install."""
    monkeypatch.setitem(sys.modules, "zstandard", None)
    error = _refused(_ingest.decompress, b"x", "zstd")
    assert (error.status, error.message) == (
        415,
        "this server cannot decode zstd (install zstandard)",
    )


def _too_many(kind: str, payload: bytes) -> None:
    error = _refused(_ingest.decode, payload, kind)
    assert (error.status, error.message) == (
        413,
        f"a batch holds at most {MAX_BATCH_RECORDS} records",
    )


@pytest.mark.parametrize("marker", [b"\xdc", b"\xdd"], ids=["array16", "array32"])
def test_msgpack_header_over_the_limit_is_413_before_any_element(marker: bytes) -> None:
    """An array 16/32 header declaring MAX_BATCH_RECORDS + 1 elements is 413 with no elements."""
    width = 2 if marker == b"\xdc" else 4
    _too_many(MSGPACK, marker + (MAX_BATCH_RECORDS + 1).to_bytes(width, "big"))


@pytest.mark.parametrize("marker", [b"\xdc", b"\xdd"], ids=["array16", "array32"])
def test_msgpack_array_of_exactly_the_limit_is_decoded(marker: bytes) -> None:
    """An array 16/32 of exactly MAX_BATCH_RECORDS elements is decoded, each one by index."""
    width = 2 if marker == b"\xdc" else 4
    payload = marker + MAX_BATCH_RECORDS.to_bytes(width, "big") + b"\x01" * MAX_BATCH_RECORDS
    decoded = _ingest.decode(payload, MSGPACK)
    assert decoded.count == 0
    assert [r.index for r in decoded.rejected] == list(range(MAX_BATCH_RECORDS))


def test_msgpack_header_at_the_limit_without_its_elements_is_400_not_413() -> None:
    """A header of exactly MAX_BATCH_RECORDS is not refused as too many; the short body is 400."""
    error = _refused(_ingest.decode, b"\xdc" + MAX_BATCH_RECORDS.to_bytes(2, "big"), MSGPACK)
    assert error.status == 400


def test_json_array_over_the_limit_is_413_and_at_the_limit_is_decoded() -> None:
    """A JSON array of MAX_BATCH_RECORDS elements decodes; one more is 413."""
    at_limit = b"[" + b",".join([b"1"] * MAX_BATCH_RECORDS) + b"]"
    decoded = _ingest.decode(at_limit, JSON)
    assert [r.index for r in decoded.rejected] == list(range(MAX_BATCH_RECORDS))
    _too_many(JSON, b"[" + b",".join([b"1"] * (MAX_BATCH_RECORDS + 1)) + b"]")


@pytest.mark.parametrize("kind", [MSGPACK, JSON])
def test_empty_array_decodes_to_nothing(kind: str) -> None:
    """An empty array is a batch of no records, none rejected."""
    decoded = _ingest.decode(b"\x90" if kind == MSGPACK else b"[]", kind)
    assert (decoded.values, list(decoded.indexes), decoded.rejected) == ([], [], [])


@pytest.mark.parametrize(
    ("kind", "payload"),
    [(MSGPACK, b""), (MSGPACK, b"\x81\xa1a\x01"), (JSON, b"{}"), (JSON, b"[1,"), (JSON, b"")],
)
def test_body_that_is_not_an_array_is_400_naming_the_format(kind: str, payload: bytes) -> None:
    """A body that is not an array is refused whole: 400, naming the format."""
    error = _refused(_ingest.decode, payload, kind)
    assert error.status == 400
    assert error.message.startswith(f"body is not a {kind} array of records: ")


@pytest.mark.parametrize("kind", [MSGPACK, JSON])
def test_body_nested_too_deeply_is_400_with_our_reason(kind: str) -> None:
    """Nesting past the decoder's recursion limit is 400 with our reason, not the interpreter's."""
    payload = b"\x91" * 100_000 + b"\xc0" if kind == MSGPACK else b"[" * 100_000
    error = _refused(_ingest.decode, payload, kind)
    assert (error.status, error.message) == (
        400,
        f"body is not a {kind} array of records: {TOO_DEEP}",
    )


@pytest.mark.parametrize("kind", [MSGPACK, JSON])
def test_decoded_columns_are_ours_in_table_order(kind: str) -> None:
    """Each good record gives id, ts, the indexed fields (NULL when absent) and its MessagePack."""
    full, bare = record("full", ts=1.5, **FULL), record("bare", ts=2.0)
    items = [full, bare]
    payload = body(items) if kind == MSGPACK else msgspec.json.encode(items)
    decoded = _ingest.decode(payload, kind)
    assert _sql(decoded.values) == _row(full) + _row(bare)
    assert all(type(v) is bytearray for v in decoded.values[_rules.COLUMNS - 1 :: _rules.COLUMNS])
    assert _sql(decoded.subjects) == ["u42", None]
    assert (list(decoded.indexes), decoded.rejected, decoded.count) == ([0, 1], [], 2)


@pytest.mark.parametrize("blobs", [False, True])
def test_to_rows_columns_and_subjects_are_ours(blobs: bool) -> None:
    """to_rows gives the same columns with the caller's blobs as when it encodes them."""
    full, bare = record("full", ts=1.5, **FULL), record("bare", ts=2.0)
    decoded = _ingest.to_rows([full, bare], [encode(full), encode(bare)] if blobs else None)
    assert _sql(decoded.values) == _row(full) + _row(bare)
    assert _sql(decoded.subjects) == ["u42", None]
    assert list(decoded.indexes) == [0, 1]


#: Records that fail one of our checks, and the reason each is rejected with.
BAD = [
    ({"id": ""}, f"id must be 1 to {MAX_ID_LENGTH} characters long"),
    ({"id": "x" * (MAX_ID_LENGTH + 1)}, f"id must be 1 to {MAX_ID_LENGTH} characters long"),
    ({"ts": math.inf}, "ts must be a finite number"),
    ({"ts": -math.inf}, "ts must be a finite number"),
    ({"ts": math.nan}, "ts must be a finite number"),
    ({"duration_ms": math.nan}, "duration_ms must be a finite number"),
    ({"duration_ms": math.inf}, "duration_ms must be a finite number"),
]


@pytest.mark.parametrize(("fields", "reason"), BAD)
@pytest.mark.parametrize("blobs", [False, True])
def test_record_failing_a_check_is_rejected_by_index(
    fields: dict[str, Any], reason: str, blobs: bool
) -> None:
    """A record failing a check is rejected at its index with our reason; the others are kept."""
    records = [record("a"), record("bad", **{"ts": 3.0, **fields}), record("c")]
    decoded = _ingest.to_rows(records, list(map(encode, records)) if blobs else None)
    assert decoded.rejected == [Rejected(1, reason)]
    assert list(decoded.indexes) == [0, 2]
    assert decoded.values[0 :: _rules.COLUMNS] == ["a", "c"]
    assert [bytes(b) for b in decoded.values[_rules.COLUMNS - 1 :: _rules.COLUMNS]] == [
        encode(records[0]),
        encode(records[2]),
    ]


@pytest.mark.parametrize(
    "fields",
    [{"id": "x"}, {"id": "x" * MAX_ID_LENGTH}, {"ts": -sys.float_info.max}, {"duration_ms": 0.0}],
)
@pytest.mark.parametrize("blobs", [False, True])
def test_records_at_the_edges_of_the_checks_are_kept(fields: dict[str, Any], blobs: bool) -> None:
    """Ids of 1 and MAX_ID_LENGTH characters, finite extremes and a zero duration are kept."""
    rec = record(**{"ts": 1.0, **fields})
    decoded = _ingest.to_rows([rec], [encode(rec)] if blobs else None)
    assert (decoded.rejected, list(decoded.indexes), decoded.count) == ([], [0], 1)


def test_to_rows_keeps_earlier_rejections_in_place() -> None:
    """A Rejected in the input is passed on, and the good records keep their own indexes."""
    good = record("b")
    records: list[Record | Rejected] = [Rejected(0, "bad map"), good, record("c", ts=math.inf)]
    blobs = [b"\xc0", encode(good), b"\xc0"]
    for given in (blobs, None):
        decoded = _ingest.to_rows(records, given)
        assert decoded.rejected == [
            Rejected(0, "bad map"),
            Rejected(2, "ts must be a finite number"),
        ]
        assert list(decoded.indexes) == [1]
        assert decoded.values[0] == "b"


def test_record_that_cannot_be_messagepack_is_rejected_with_our_prefix() -> None:
    """A JSON record whose integer exceeds MessagePack's 64 bits is rejected by index."""
    payload = msgspec.json.encode([record("ok"), record("big", metadata={"n": 2**70})])
    decoded = _ingest.decode(payload, JSON)
    assert [r.index for r in decoded.rejected] == [1]
    assert decoded.rejected[0].error.startswith("record cannot be stored as MessagePack: ")
    assert list(decoded.indexes) == [0]


@pytest.mark.parametrize("kind", [MSGPACK, JSON])
def test_record_the_decoder_refuses_is_rejected_by_index(kind: str) -> None:
    """An element that is not a record is rejected at its index; the records around it are kept."""
    items: list[Any] = [record("a"), {"id": "b", "ts": 1.0}, 7, record("d")]
    payload = body(items) if kind == MSGPACK else msgspec.json.encode(items)
    decoded = _ingest.decode(payload, kind)
    assert [r.index for r in decoded.rejected] == [1, 2]
    assert all(r.error for r in decoded.rejected)
    assert list(decoded.indexes) == [0, 3]
    assert decoded.values[0 :: _rules.COLUMNS] == ["a", "d"]


@pytest.mark.parametrize("kind", [MSGPACK, JSON])
def test_repeated_key_is_rejected_with_our_reason(kind: str) -> None:
    """A record map holding a key twice is rejected at its index, naming the key."""
    good = encode(record("a"))
    twice = b"\x85\xa2id\xa1x\xa2ts\x01\xa5input\xa1i\xa6output\xa1o\xa2id\xa1y"
    if kind == MSGPACK:
        payload = b"\x92" + good + twice
    else:
        head = b'{"id":"a","ts":1,"input":"i","output":"o"}'
        payload = b"[" + head + b"," + head[:-1] + b',"id":"y"}]'
    decoded = _ingest.decode(payload, kind)
    assert decoded.rejected == [Rejected(1, "key 'id' appears more than once in the record")]
    assert list(decoded.indexes) == [0]


def test_msgpack_records_are_stored_as_they_came() -> None:
    """A MessagePack record's stored blob is its bytes from the body, not a re-encoding."""
    raw = msgspec.msgpack.encode({"output": "o", "input": "i", "ts": 1.0, "id": "r"})
    decoded = _ingest.decode(b"\x91" + raw, MSGPACK)
    assert bytes(decoded.values[_rules.COLUMNS - 1]) == raw


def test_decoded_count_is_values_over_columns() -> None:
    """Decoded.count is the number of records whose columns ``values`` holds."""
    assert _ingest.Decoded([0] * (3 * _rules.COLUMNS)).count == 3
    assert _ingest.Decoded().count == 0


def test_undecodable_reason_is_the_decoders_text_but_for_recursion_and_utf8() -> None:
    """undecodable gives the exception's own text, or ours: TOO_DEEP for a RecursionError,
    NOT_UTF8 for a string that is not UTF-8 anywhere in the record (#13)."""
    bad = msgspec.DecodeError("bad")
    assert undecodable(bad) == "bad"
    assert undecodable(RecursionError("maximum recursion")) == TOO_DEEP
    assert undecodable(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid")) == NOT_UTF8
    nested = msgspec.msgpack.encode({"a": [1.5, {"@@": b"\xff"}], "b": "ok"})
    assert undecodable(bad, nested, MSGPACK) == "bad"
    assert undecodable(bad, nested.replace(b"@@", b"\xff\xfe"), MSGPACK) == NOT_UTF8
    assert undecodable(bad, b'{"a": "\xff"}', JSON) == NOT_UTF8
    assert undecodable(bad, b'{"a": 1', JSON) == "bad"


def test_a_zlib_stream_is_not_gzip() -> None:
    """Content-Encoding gzip takes the gzip format only, not a bare zlib stream."""
    error = _refused(_ingest.decompress, zlib.compress(b"abc"), "gzip")
    assert error.status == 400
    assert error.message.startswith("body is not valid gzip: ")


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    """After a first member of ``limit`` bytes, a bomb is refused having inflated ~1 byte of it."""
    limit = 4 << 20
    bomb = gzip.compress(bytes(limit)) + gzip.compress(bytes(64 << 20))
    tracemalloc.start()
    try:
        error = _refused(_ingest.decompress, bomb, "gzip", limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.status == 413
    # ~2x limit: zlib grows its output buffer up to max_length, then trims it with a copy.
    assert peak < 3 * limit


#: A record map in another key order than ours: re-encoding it would give other bytes.
REORDERED = msgspec.msgpack.encode({"output": "o", "input": "i", "ts": 1.0, "id": "r"})


def test_msgpack_records_beside_a_bad_one_are_stored_as_they_came() -> None:
    """On the record-by-record path too, a good MessagePack record's blob is its bytes as sent."""
    payload = b"\x92" + REORDERED + msgspec.msgpack.encode({"id": "bad"})
    decoded = _ingest.decode(payload, MSGPACK)
    assert [r.index for r in decoded.rejected] == [1]
    assert bytes(decoded.values[_rules.COLUMNS - 1]) == REORDERED
    bad = record("x", ts=math.inf)
    rows = _ingest.to_rows([msgspec.msgpack.decode(REORDERED, type=Record), bad], [REORDERED, b""])
    assert bytes(rows.values[_rules.COLUMNS - 1]) == REORDERED


@pytest.mark.parametrize("path", ["fast", "slow", "json", "to_rows"])
def test_absent_columns_hold_nan_the_decoders_null(path: str) -> None:
    """Every path spells an absent column and subject as NaN (NULL), which each engine binds."""
    bare = record("bare", ts=1.0)
    items: list[Any] = [bare] if path != "slow" else [bare, {"id": "bad"}]
    if path == "to_rows":
        decoded = _ingest.to_rows([bare], [encode(bare)])
    else:
        kind = JSON if path == "json" else MSGPACK
        payload = msgspec.json.encode(items) if kind == JSON else body(items)
        decoded = _ingest.decode(payload, kind)
    absent = decoded.values[2 : _rules.COLUMNS - 1] + decoded.subjects
    assert len(absent) == _rules.COLUMNS - 2
    assert all(isinstance(v, float) and math.isnan(v) for v in absent), absent


def test_an_undecodable_record_keeps_the_decoders_reason_over_a_repeated_key() -> None:
    """A record that fails to decode is rejected for that, even when it also repeats a key."""
    broken = b"\x85\xa2id\xa1x\xa2ts\xa3bad\xa5input\xa1i\xa6output\xa1o\xa2id\xa1y"
    decoded = _ingest.decode(b"\x92" + encode(record("a")) + broken, MSGPACK)
    assert [r.index for r in decoded.rejected] == [1]
    assert not decoded.rejected[0].error.startswith("key ")
