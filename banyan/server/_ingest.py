"""Turning a batch body into rows: decompression, decoding, per-record checks.

Pure functions, no I/O. A body that cannot be read as an array is refused
whole (400/413/415); a record inside a good array that fails its checks is
rejected by index while the others are kept. An element whose ``kind`` is
``"score"`` is a score record (docs/protocol.md, section 3.1); any other is a
log record.
"""

from __future__ import annotations

import contextlib
import io
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain
from typing import Annotated, Any, cast

import msgspec

from banyan._record import MAX_ID_LENGTH, SCORE, Record, Score, UsageRecord
from banyan._usage import MAX_TOKENS
from banyan._wire import (
    JSON,
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MSGPACK,
    Rejected,
    msgpack_array_header,
)
from banyan.server import _rules
from banyan.server._http import HTTPError
from banyan.server._repeats import repeated_key
from banyan.server._rules import COLUMN_NAMES, COLUMNS, NULL, SCORE_COLUMNS, Blob
from banyan.server._undecodable import UNDECODABLE, undecodable

#: Records decoded at a time on the fast path: their strings are freed, and their
#: memory reused, while it is still in cache (a 10,000-record batch allocates ~25 MB).
CHUNK = 256
#: Members of a gzip body: zlib hands back the input left after each one as a
#: copy, so every member costs a copy of the rest of the body.
MAX_GZIP_MEMBERS = 8

_MSGPACK_TYPES = {MSGPACK, "application/x-msgpack", "application/vnd.msgpack"}
#: First bytes of MessagePack maps that are not a fixmap (0x80-0x8f).
_FIXMAPS = bytes(range(0x80, 0x90))

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
_Finite = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
_Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
_Cost = Annotated[float, msgspec.Meta(ge=0, le=sys.float_info.max)]
#: NULL as the default of every optional field (msgspec never checks defaults): it
#: binds as SQL NULL, and tells an absent key from an explicit null (see _absent).
_ABSENT: Any = NULL


class _Valid(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A UsageRecord that passes every check of ``_problem``; absent columns are NULL.

    It accepts a subset of what Record accepts, so a batch it refuses takes the
    record-by-record path, which gives the reasons. Fields in Record's order:
    msgspec matches keys fastest in declared order.
    """

    id: _Id
    ts: _Finite
    input: str
    output: str
    prompt_id: str | None = _ABSENT
    prompt_name: str | None = _ABSENT
    version: str | None = _ABSENT
    branch_name: str | None = _ABSENT
    model: str | None = _ABSENT
    metadata: dict[str, Any] | None = _ABSENT
    duration_ms: _Finite | None = _ABSENT
    experiment_id: str | None = _ABSENT
    experiment_version_id: str | None = _ABSENT
    sticky_key: str | None = _ABSENT
    sticky_value: str | None = _ABSENT
    input_tokens: _Tokens | None = _ABSENT
    output_tokens: _Tokens | None = _ABSENT
    cached_input_tokens: _Tokens | None = _ABSENT
    cost: _Cost | None = _ABSENT


_valid = msgspec.msgpack.Decoder(list[_Valid]).decode
#: _Valid's required fields come first: id, ts, input, output.
_REQUIRED = 4
_fields = msgspec.structs.astuple
#: Where a Row's columns but the blob sit among a _Valid's fields.
_FIELDS = tuple(map(_Valid.__struct_fields__.index, COLUMN_NAMES))
_SUBJECT = _Valid.__struct_fields__.index("sticky_value")


def _too_many() -> HTTPError:
    return HTTPError(413, f"a batch holds at most {MAX_BATCH_RECORDS} records")


_msgpack_raws = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode


def _msgpack_elements(body: bytes) -> list[msgspec.Raw]:
    # An array 16 or 32 header declares the length: refuse it before reading any element.
    width = {0xDC: 2, 0xDD: 4}.get(body[0] if body else 0, 0)
    if int.from_bytes(body[1 : 1 + width], "big") > MAX_BATCH_RECORDS:
        raise _too_many()
    return _msgpack_raws(body)


#: A JSON array as one slot per element, up to one past the limit. A JSON array
#: does not declare its length, and list[Raw] would hold 16 million elements of a
#: 32 MiB "[0,0,...]" before they could be counted; msgspec skips the elements
#: past the last slot without allocating them.
_JsonSlots = msgspec.defstruct(
    "_JsonSlots",
    [(f"e{i}", msgspec.Raw, None) for i in range(MAX_BATCH_RECORDS + 1)],
    array_like=True,
    gc=False,
)
_json_slots = msgspec.json.Decoder(_JsonSlots).decode


def _json_elements(body: bytes) -> list[msgspec.Raw]:
    slots = msgspec.structs.astuple(_json_slots(body))
    if slots[-1] is not None:
        raise _too_many()
    return list(slots[: slots.index(None)])


@dataclass
class Codec:
    """The decoders for one body format."""

    raw: Callable[[bytes], list[msgspec.Raw]]
    all: Callable[[bytes], list[UsageRecord]]
    one: Callable[[msgspec.Raw], UsageRecord]
    score: Callable[[msgspec.Raw], Score]
    #: The element's ``kind`` (None for a log record); raises for an element that is no map.
    kind: Callable[[msgspec.Raw], str | None]
    media: str


class _Kind(msgspec.Struct, gc=False):
    """Only an element's ``kind``: the decoder skips every other key."""

    kind: str | None = None


def _codec(module: Any, elements: Callable[[bytes], list[msgspec.Raw]], media: str) -> Codec:
    kind = module.Decoder(_Kind).decode
    return Codec(
        elements,
        module.Decoder(list[UsageRecord]).decode,
        module.Decoder(UsageRecord).decode,
        module.Decoder(Score).decode,
        lambda raw: kind(raw).kind,
        media,
    )


_CODECS = {
    MSGPACK: _codec(msgspec.msgpack, _msgpack_elements, MSGPACK),
    JSON: _codec(msgspec.json, _json_elements, JSON),
}
#: Anything to_rows takes: a decoded log or score record, or an element's rejection.
Element = Record | Score | Rejected


@dataclass
class Decoded:
    """A batch ready to store: the good records' columns, their indexes, the refused."""

    #: COLUMNS values per good log record, one record after the other: INSERT parameters.
    values: list[Any] = field(default_factory=list)
    indexes: Sequence[int] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    #: Each good record's experiment subject (its sticky value) or NULL, in ``values`` order.
    subjects: list[Any] = field(default_factory=list)
    #: SCORE_COLUMNS values per good score record, and their indexes in the batch.
    scores: list[Any] = field(default_factory=list)
    score_indexes: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many good records (log and score) the batch holds."""
        return len(self.values) // COLUMNS + len(self.scores) // SCORE_COLUMNS


def media_type(content_type: str) -> str:
    """The format a Content-Type names (MSGPACK or JSON); 415 for anything else."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in _MSGPACK_TYPES:
        return MSGPACK
    if kind == JSON:
        return JSON
    raise HTTPError(415, f"unsupported Content-Type {content_type!r}; use {MSGPACK} or {JSON}")


def decompress(body: bytes, encoding: str, limit: int = MAX_BATCH_BYTES) -> bytes:
    """Undo Content-Encoding, refusing (413) output larger than ``limit``."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(body, limit)
    if encoding == "zstd":
        return _unzstd(body, limit)
    raise HTTPError(415, f"unsupported Content-Encoding {encoding!r}; use zstd, gzip or none")


def _too_big(limit: int) -> HTTPError:
    return HTTPError(413, f"decompressed body exceeds the {limit} byte limit")


def _gunzip(body: bytes, limit: int) -> bytes:
    # Every member counts (RFC 1952, 2.2), as every frame of a zstd body does.
    parts: list[bytes] = []
    while len(parts) < MAX_GZIP_MEMBERS:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            parts.append(inflater.decompress(body, limit + 1 - sum(map(len, parts))))
        except zlib.error as exc:
            raise HTTPError(400, f"body is not valid gzip: {exc}") from None
        if sum(map(len, parts)) > limit:
            raise _too_big(limit)
        if not inflater.eof:
            raise HTTPError(400, "body is not valid gzip: truncated stream")
        body = inflater.unused_data
        if not body:
            return b"".join(parts)
    raise HTTPError(413, f"a gzip body holds at most {MAX_GZIP_MEMBERS} members")


def _unzstd(body: bytes, limit: int) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise HTTPError(415, "this server cannot decode zstd (install zstandard)") from None
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
    try:
        out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise HTTPError(400, f"body is not valid zstd: {exc}") from None
    if len(out) > limit:
        raise _too_big(limit)
    return out


def decode(body: bytes, kind: str) -> Decoded:
    """Decode a (decompressed) batch body into rows."""
    codec = _CODECS[kind]
    try:
        raws = codec.raw(body)
    except UNDECODABLE as exc:
        reason = undecodable(exc, body, kind)
        raise HTTPError(400, f"body is not a {kind} array of records: {reason}") from None
    # A MessagePack element is stored as it came; a JSON one is re-encoded.
    blobs = raws if kind == MSGPACK else None
    if blobs is not None:
        with contextlib.suppress(*UNDECODABLE):
            fast = _valid_batch(body, raws)
            if fast is not None:
                return fast
    records: Sequence[Element]
    try:
        records = codec.all(body)
    except UNDECODABLE:
        records = [_decode_one(codec, raw, index) for index, raw in enumerate(raws)]
    return to_rows(_unrepeated(records, raws, kind), blobs)


def _valid_batch(body: bytes, raws: list[msgspec.Raw]) -> Decoded | None:
    """Columns of a MessagePack batch in which every record is good.

    Raises, or returns None when a record map may repeat a key, for the
    record-by-record path to find which.
    """
    sizes = list(map(len, raws))
    ends = list(accumulate(sizes, initial=len(body) - sum(sizes)))
    view = memoryview(body)
    values: list[Any] = [NULL] * (len(raws) * COLUMNS)
    subjects: list[Any] = [NULL] * len(raws)
    for first in range(0, len(raws), CHUNK):
        last = min(first + CHUNK, len(raws))
        records = _valid(msgpack_array_header(last - first) + view[ends[first] : ends[last]])
        # Strided slices copy each column in C: no Python frame and no row tuple per record.
        fields = list(chain.from_iterable(map(_fields, records)))
        if _entries(body, ends[first:last]) != len(fields) - _absent(fields):
            return None
        width = len(_Valid.__struct_fields__)
        for column, at in enumerate(_FIELDS):
            values[first * COLUMNS + column : last * COLUMNS : COLUMNS] = fields[at::width]
        blobs = map(bytearray, raws[first:last])
        values[(first + 1) * COLUMNS - 1 : last * COLUMNS : COLUMNS] = blobs
        subjects[first:last] = fields[_SUBJECT::width]
    return Decoded(values, range(len(raws)), subjects=subjects)


def _entries(body: bytes, starts: list[int]) -> int:
    """How many entries the record maps starting at ``starts`` hold; -1 for another header."""
    heads = bytes(map(body.__getitem__, starts))
    if not heads.translate(None, _FIXMAPS):
        return sum(heads) - 0x80 * len(heads)
    # A UsageRecord (16 fields and more) has a map16 header whatever it holds.
    if heads.translate(None, _FIXMAPS + b"\xde"):
        return -1
    sizes = (
        body[at + 1] << 8 | body[at + 2] if body[at] == 0xDE else body[at] - 0x80 for at in starts
    )
    return sum(sizes)


def _absent(fields: list[Any]) -> int:
    """How many of the decoded fields were absent from their maps (they hold _ABSENT).

    With every key a field (forbid_unknown_fields), a map without a repeated key
    has exactly as many entries as fields present: a repeat makes the counts
    differ, and the batch takes the record-by-record path, which finds it.
    Counted column by column, optional ones only: 4x faster than one count.
    """
    width = len(_Valid.__struct_fields__)
    return sum(fields[at::width].count(_ABSENT) for at in range(_REQUIRED, width))


def _unrepeated(
    records: Sequence[Element], raws: Sequence[msgspec.Raw], kind: str
) -> list[Element]:
    """``records``, with each one whose map repeats a key replaced by its rejection."""
    out: list[Element] = list(records)
    for index, raw in enumerate(raws):
        key = None if isinstance(out[index], Rejected) else repeated_key(raw, kind)
        if key is not None:
            out[index] = Rejected(index, f"key {key!r} appears more than once in the record")
    return out


def _decode_one(codec: Codec, raw: msgspec.Raw, index: int) -> Element:
    try:
        kind = codec.kind(raw)
    except UNDECODABLE:
        kind = None  # not a map, or a kind that is no string: the record decoder says why
    try:
        if kind is None:
            return codec.one(raw)
        if kind == SCORE:
            return codec.score(raw)
    except UNDECODABLE as exc:
        return Rejected(index, undecodable(exc, raw, codec.media))
    return Rejected(index, f"unknown record kind {kind!r}; a record's kind is absent or {SCORE!r}")


def to_rows(records: Sequence[Element], blobs: Sequence[Blob] | None = None) -> Decoded:
    """Check decoded records and turn the good ones into rows.

    ``blobs`` holds each record's MessagePack; without it records are encoded here.
    """
    if blobs is not None and _rules.all_good(records):
        good = cast("list[Record]", records)
        rows = _rules.rows(good, blobs)
        values = [value for row in rows for value in row]
        return Decoded(values, range(len(rows)), subjects=list(map(_rules.subject, good)))
    out, indexes = Decoded(), []
    for index, record in enumerate(records):
        if isinstance(record, Rejected):
            out.rejected.append(record)
            continue
        score = isinstance(record, Score)
        problem = _rules.score_problem(record) if score else _rules.problem(record)  # type: ignore[arg-type]
        blob = Rejected(index, problem) if problem else _rules.blob(record, index, blobs)
        if isinstance(blob, Rejected):
            out.rejected.append(blob)
        elif isinstance(record, Score):
            out.scores.extend(_rules.score_row(record, blob))
            out.score_indexes.append(index)
        else:
            out.values.extend(_rules.rows([record], [blob])[0])
            out.subjects.append(_rules.subject(record))
            indexes.append(index)
    out.indexes = indexes
    return out
