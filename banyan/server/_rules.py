"""The record rules and the rows they become: one source for what a log or score record
must hold (docs/protocol.md, sections 3 and 3.1) and for the columns each is stored in.

``_ingest`` decodes a batch; the checks and the rows of each decoded record are here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec

from banyan._record import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    USAGE_FIELDS,
    Record,
    Score,
    UsageRecord,
    encode,
)
from banyan._usage import MAX_TOKENS
from banyan._wire import Rejected

#: A logs row but its project_id and subject: the indexed Record fields, the record last.
Row = tuple[Any, ...]
#: A record's MessagePack encoding, as bytes or a slice of the batch body.
Blob = bytes | msgspec.Raw
#: Values in a Row.
COLUMNS = 13
#: A Row's columns but the record, by name (the record, a blob, is the last value).
COLUMN_NAMES = (
    "id", "ts", "prompt_name", "version", "branch_name", "model", "duration_ms",
    "experiment_id", "experiment_version_id", "input_tokens", "output_tokens", "cost",
)  # fmt: skip
#: A scores row but its project_id, by name; the record follows.
SCORE_COLUMN_NAMES = (
    "id", "ts", "name", "kind", "value", "category", "record_id",
    "experiment_id", "experiment_version_id", "subject",
)  # fmt: skip
#: Values in a scores row (the record last).
SCORE_COLUMNS = len(SCORE_COLUMN_NAMES) + 1
#: Binds as SQL NULL (see rows).
NULL = math.nan

isfinite = math.isfinite


def all_good(records: Sequence[Record | Score | Rejected]) -> bool:
    """Whether every one of ``records`` is a log record that passes ``problem``."""
    return not any(type(r) not in _RECORDS or problem(r) for r in records)  # type: ignore[arg-type]


_RECORDS = (Record, UsageRecord)


def _null(value: Any) -> Any:
    return NULL if value is None else value


def rows(records: Sequence[Record], blobs: Sequence[Blob]) -> list[Row]:
    """The logs rows of good records (COLUMNS values each, the blob last)."""
    # Python's sqlite3 sends None, bytes and Raw through its adapter lookup
    # (~0.5 us each) but binds NaN (as NULL) and bytearray directly.
    return [
        (
            r.id, r.ts,
            NULL if r.prompt_name is None else r.prompt_name,
            NULL if r.version is None else r.version,
            NULL if r.branch_name is None else r.branch_name,
            NULL if r.model is None else r.model,
            NULL if r.duration_ms is None else r.duration_ms,
            NULL if r.experiment_id is None else r.experiment_id,
            NULL if r.experiment_version_id is None else r.experiment_version_id,
            *(_usage(r) if type(r) is UsageRecord else _NO_USAGE),
            bytearray(blob),
        )
        for r, blob in zip(records, blobs, strict=True)
    ]  # fmt: skip


_NO_USAGE = (NULL, NULL, NULL)


def _usage(r: UsageRecord) -> tuple[Any, Any, Any]:
    return _null(r.input_tokens), _null(r.output_tokens), _null(r.cost)


def subject(r: Record) -> Any:
    """A record's experiment subject (its sticky value), or NULL."""
    return NULL if r.sticky_value is None else r.sticky_value


def problem(r: Record) -> str | None:
    """Why a decoded log record is invalid, or None."""
    if not r.id or len(r.id) > MAX_ID_LENGTH:
        return f"id must be 1 to {MAX_ID_LENGTH} characters long"
    if not isfinite(r.ts):
        return "ts must be a finite number"
    if r.duration_ms is not None and not isfinite(r.duration_ms):
        return "duration_ms must be a finite number"
    return _usage_problem(r) if type(r) is UsageRecord else None


def _usage_problem(r: UsageRecord) -> str | None:
    for name in ("input_tokens", "output_tokens", "cached_input_tokens"):
        count = getattr(r, name)
        if count is not None and not 0 <= count <= MAX_TOKENS:
            return f"{name} must be a whole number from 0 to {MAX_TOKENS}"
    if r.cost is not None and not (isfinite(r.cost) and r.cost >= 0):
        return "cost must be a finite number >= 0 (US dollars)"
    return None


def score_problem(s: Score) -> str | None:
    """Why a decoded score record is invalid, or None."""
    if not s.id or len(s.id) > MAX_ID_LENGTH:
        return f"id must be 1 to {MAX_ID_LENGTH} characters long"
    if not isfinite(s.ts):
        return "ts must be a finite number"
    if not 0 < len(s.name) <= MAX_NAME_LENGTH:
        return f"name must be 1 to {MAX_NAME_LENGTH} characters long"
    if isinstance(s.value, str) and not 0 < len(s.value) <= MAX_NAME_LENGTH:
        return f"a category must be 1 to {MAX_NAME_LENGTH} characters long"
    if isinstance(s.value, float) and not isfinite(s.value):
        return "a number value must be finite"
    if s.record_id is not None and not 0 < len(s.record_id) <= MAX_ID_LENGTH:
        return f"record_id must be 1 to {MAX_ID_LENGTH} characters long"
    if s.record_id is None and None in (s.experiment_id, s.experiment_version_id, s.sticky_value):
        return "a score needs record_id, or experiment_id, experiment_version_id and sticky_value"
    return None


def score_row(s: Score, blob: Blob) -> Row:
    """The scores row of a good score (SCORE_COLUMNS values, the blob last)."""
    value = s.value
    kind, number, category = (
        ("boolean", float(value), NULL) if isinstance(value, bool)
        else ("category", NULL, value) if isinstance(value, str)
        else ("number", value, NULL)
    )  # fmt: skip
    return (
        s.id, s.ts, s.name, kind, number, category, _null(s.record_id), _null(s.experiment_id),
        _null(s.experiment_version_id), _null(s.sticky_value), bytearray(blob),
    )  # fmt: skip


def blob(record: Record | Score, index: int, blobs: Sequence[Blob] | None) -> Blob | Rejected:
    """The MessagePack to store: as received in ``blobs``, else encoded here."""
    if blobs is not None:
        return blobs[index]
    # JSON bodies and the 1.0.1 endpoint: JSON integers may exceed MessagePack's 64 bits.
    try:
        return encode(as_sent(record))
    except (msgspec.EncodeError, OverflowError, RecursionError, TypeError, ValueError) as exc:
        return Rejected(index, f"record cannot be stored as MessagePack: {exc}")


def as_sent(record: Record | Score) -> Record | Score:
    """``record`` as the client's struct would encode it: a Record when it has no usage."""
    if type(record) is not UsageRecord or any(getattr(record, n) is not None for n in USAGE_FIELDS):
        return record
    fields = msgspec.structs.asdict(record)
    return Record(**{name: fields[name] for name in Record.__struct_fields__})
