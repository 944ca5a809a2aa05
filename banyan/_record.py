"""The log record: its wire shape, its id, and its one-time encoding.

A record is encoded once, on the caller's thread, to MessagePack; the bytes
are what the ring holds, what the spool frames and what a batch body
concatenates (see docs/protocol.md, "Batch ingest").
"""

from __future__ import annotations

import datetime
import decimal
import enum
import itertools
import math
import os
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import msgspec
import orjson

from banyan._routing import utf8

#: An encoded record: ``bytes`` (from the spool), or the exact-size ``bytearray`` that
#: ``log_prompt`` copies out of its scratch buffer.
Encoded = bytes | bytearray

#: Longest record id the server accepts.
MAX_ID_LENGTH = 128


# gc=False: a record holds only text, numbers and the caller's metadata, never
# itself, so it cannot be part of a cycle; untracked structs encode and decode
# measurably faster (~20 % on a 10,000-record batch decode).
class Record(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """One logged prompt usage, as it travels on the wire."""

    id: str
    ts: float
    input: str
    output: str
    prompt_id: str | None = None
    prompt_name: str | None = None
    version: str | None = None
    branch_name: str | None = None
    model: str | None = None
    metadata: dict[str, Any] | None = None
    duration_ms: float | None = None
    experiment_id: str | None = None
    experiment_version_id: str | None = None
    sticky_key: str | None = None
    sticky_value: str | None = None


# Its own type, not four more Record fields: msgspec sizes a map's header by the
# struct's field count, and a 16th field would turn every record's fixmap header
# into a map16 one, changing the bytes of records without usage and taking them
# off the server's fast path (which counts fixmap entries).
class UsageRecord(Record):
    """A record with token usage or cost (docs/protocol.md, section 3); same wire map."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    #: US dollars.
    cost: float | None = None


#: The usage fields, which only a UsageRecord has.
USAGE_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cost")


def record_type(fields: Mapping[str, Any]) -> type[Record]:
    """The struct that encodes a record map: UsageRecord when it holds a usage field."""
    return UsageRecord if any(name in fields for name in USAGE_FIELDS) else Record


#: The ``kind`` of a score record; a record without ``kind`` is a log record.
SCORE = "score"

#: Longest score name and category the server accepts.
MAX_NAME_LENGTH = 128


class Score(
    msgspec.Struct,
    tag_field="kind",
    tag=SCORE,
    omit_defaults=True,
    forbid_unknown_fields=True,
    gc=False,
):
    """One outcome (a number, a boolean or a category), as it travels on the wire.

    Attributed to an experiment subject (``experiment_id``, ``experiment_version_id``,
    ``sticky_value`` from the ``prompt_data`` of the scored call) and/or to one logged
    record (``record_id``, the ``id`` that ``log_prompt`` was given).
    """

    id: str
    ts: float
    name: str
    value: bool | float | str
    record_id: str | None = None
    experiment_id: str | None = None
    experiment_version_id: str | None = None
    sticky_key: str | None = None
    sticky_value: str | None = None
    metadata: dict[str, Any] | None = None


class IdSource:
    """Cheap unique ids: a random per-process prefix plus a hex counter (``...-0x1a``).

    uuid4 costs ~3 us a call; ``next()`` ~0.15 us. A forked child must call
    :meth:`reset` so that it never reuses its parent's prefix.
    """

    next: Callable[[], str]
    #: The random part of every id made since the last reset.
    prefix: str

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = prefix = os.urandom(8).hex() + "-"
        # C iterators all the way down: no Python frame per id, and hex() beats an
        # f-string's format spec (measured ~0.15 us against ~0.3 us).
        self.next = map(prefix.__add__, map(hex, itertools.count(1))).__next__

    def made(self, record_id: str) -> bool:
        """Whether ``record_id`` came from :meth:`next` (since the last reset), not from a
        caller (``record_id=``, ``score_id=``)."""
        return record_id.startswith(self.prefix)


#: An array (numpy, pandas, a tensor) of at most this many items is logged as a list; a
#: bigger one as a placeholder naming its type and shape: ``tolist()`` of a 2000x2000
#: array takes a second and makes a 36 MB record (review item 5).
MAX_LISTED_ITEMS = 4096


def _to_wire(obj: Any) -> Any:
    # msgspec calls this only for types it cannot encode itself.
    kind = type(obj)
    if isinstance(obj, bytes | bytearray | memoryview):  # memoryview has a tolist() too
        return bytes(obj).decode("utf-8", "replace")
    for name in ("tolist", "item"):  # numpy arrays and scalars, pandas series, tensors
        # Looked up on the type: a Mock or an attribute proxy answers any name, each time
        # with a new object of its own type, and encoding would recurse for ~30 s.
        method = getattr(kind, name, None)
        if not callable(method):
            continue
        if name == "tolist" and _items(obj) > MAX_LISTED_ITEMS:
            return _placeholder(obj)
        try:
            value = method(obj)
        except Exception:
            continue
        if type(value) is not kind:
            return value
    if isinstance(obj, Mapping):  # MappingProxyType, UserDict, ChainMap...
        return dict(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return str(obj)


def _items(obj: Any) -> int:
    """How many items an array holds: ``size`` (numpy, pandas) or ``numel()`` (torch)."""
    try:
        size = obj.size
        if callable(size):
            size = obj.numel()
        return size if isinstance(size, int) else 0
    except Exception:
        return 0


def _placeholder(obj: Any) -> str:
    shape = getattr(obj, "shape", None)
    shape = tuple(shape) if isinstance(shape, tuple) else "?"
    return f"<{type(obj).__name__} shape={shape} not logged: over {MAX_LISTED_ITEMS} items>"


_encoder = msgspec.msgpack.Encoder(enc_hook=_to_wire)
encode = _encoder.encode
encode_into = _encoder.encode_into


def gil_enabled() -> bool:
    """Whether this CPython runs with its GIL (always, before the free-threaded 3.13t)."""
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


class Scratch:
    """The buffer ``log_prompt`` encodes into, in ``slot[0]``: None while one call uses it.

    msgspec grows its output ~1.5x at a time and never gives the slack back: the
    bytes that encode() returns hold ~1.35x the record. Encoding into one buffer
    and copying out (exact size) is both leaner and, without the regrowth, faster.

    Under the GIL one buffer serves every thread of the process: a call takes it
    (``buffer = slot[0]; slot[0] = None``) and gives it back with no call between
    a load and its store, so no other thread runs in between (see banyan._ring).
    A call that finds None, because another holds the buffer (a signal handler
    that interrupted it, or a thread switch while an ``enc_hook`` ran Python
    code), encodes apart and gives nothing back. Attribute access on this plain
    object costs ~40 ns less than on a ``threading.local``.
    """

    def __init__(self) -> None:
        self.slot: list[bytearray | None] = [bytearray()]


class _PerThread(threading.local, Scratch):
    # Without a GIL taking the buffer is a data race: each thread keeps its own.
    pass


def make_scratch() -> Scratch:
    """One process-wide :class:`Scratch` under the GIL, one per thread without it."""
    return Scratch() if gil_enabled() else _PerThread()


#: ``scratch.slot[0]``: the encoding buffer, None while in use.
scratch = make_scratch()
#: A scratch buffer that grew past this is replaced, so that one huge record is not kept.
SCRATCH_MAX = 64 * 1024


#: Record fields that hold the caller's text (id and ts are made here).
TEXT_FIELDS = (
    "input", "output", "prompt_id", "prompt_name", "version", "branch_name", "model",
    "experiment_id", "experiment_version_id", "sticky_key", "sticky_value",
)  # fmt: skip


def clean(value: str) -> str:
    """``value`` as valid UTF-8 can carry it: a lone surrogate becomes U+FFFD (as routed)."""
    return utf8(value).decode()


def text(value: Any) -> str:
    """Coerce a user's input or output to text (str passes through)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        try:
            return orjson.dumps(value, default=str).decode()
        except Exception:
            pass
    return str(value)


_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1


def plain(value: Any, depth: int = 0) -> Any:
    """A JSON-like copy of ``value``: string keys, no cycles, nothing exotic.

    The slow path, used only when encoding the caller's metadata failed.
    """
    if depth > 32:
        return "<too deep>"
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        return {as_key(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        # MessagePack integers are 64-bit: a bigger one keeps its digits as text.
        return value if _INT_MIN <= value <= _UINT_MAX else str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal | enum.Enum):
        return str(value.value if isinstance(value, enum.Enum) else value)
    return _to_wire(value)


def as_key(value: Any) -> str:
    """A metadata key as text: ``1`` becomes ``"1"``, a str subclass its plain text."""
    return clean(value if isinstance(value, str) else str(value))


def as_label(value: Any) -> str | None:
    """An identifier (``model``, ``version``...) as text, or None."""
    return value if value is None or value.__class__ is str else as_key(value)


def as_metadata(value: Any) -> dict[str, Any] | None:
    """``metadata`` shaped as the wire wants it: a dict with text keys.

    A mapping gets its keys stringified; any other value is kept as
    ``{"value": value}``. The very object when it already has that shape, so
    that ``log_prompt`` can tell whether anything was converted.
    """
    if value is None or (value.__class__ is dict and all(k.__class__ is str for k in value)):
        return value
    if not isinstance(value, Mapping):
        return {"value": value}
    return {k if k.__class__ is str else as_key(k): v for k, v in value.items()}


def as_duration(value: Any) -> float | None:
    """A duration in ms as a finite number, or None (a bool, NaN, other text: no duration)."""
    if value.__class__ is float:
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds() * 1000
    try:
        number = float(value)
    except Exception:
        return None
    return number if math.isfinite(number) else None


def normalize(record: Record) -> None:
    """Make ``record`` what the wire wants: its text fields valid text, its metadata plain
    (text keys), its duration a finite number or none."""
    for name in TEXT_FIELDS:
        value = getattr(record, name)
        if value is not None:
            setattr(record, name, clean(value if isinstance(value, str) else str(value)))
    record.metadata = plain(record.metadata) if record.metadata is not None else None
    record.duration_ms = as_duration(record.duration_ms)


def repaired(data: Encoded) -> Encoded | None:
    """``data``, a record the server refused, normalized; None when that changes nothing.

    ``log_prompt``'s fast path does not check metadata keys (it would cost ~10 % of the
    call): a ``{1: "a"}`` reaches the server, which refuses it, and is repaired here.
    """
    try:
        # msgspec 0.18's stubs take bytes only; every version decodes any buffer.
        fields = msgspec.msgpack.decode(cast("bytes", data))
        record = record_type(fields)(**fields)
        normalize(record)
        fixed = encode(record)
    except Exception:
        return None
    return None if fixed == data else fixed
