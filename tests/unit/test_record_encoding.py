"""Record encoding: exotic metadata made plain, text coerced, ids, per-thread buffers."""

from __future__ import annotations

import datetime
import decimal
import enum
import re
import sys
import threading
import types
import uuid
from typing import Any

import msgspec
import pytest

from banyan._record import IdSource, Record, encode, make_scratch, plain, scratch, text


class Scalar:
    """A numpy-like scalar: item() gives the plain value."""

    def __init__(self, value: Any, fails: bool = False) -> None:
        self.value, self.fails = value, fails

    def item(self) -> Any:
        if self.fails:
            raise ValueError("no item")
        return self.value

    def __str__(self) -> str:
        return f"Scalar({self.value})"


class Colour(enum.Enum):
    RED = "red"


def _metadata(value: Any) -> Any:
    record = Record(id="i", ts=1.0, input="", output="", metadata={"v": value})
    return msgspec.msgpack.decode(encode(record))["metadata"]["v"]


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (Scalar(3), 3),
        (Scalar(3, fails=True), "Scalar(3)"),
        (types.MappingProxyType({"k": 1}), {"k": 1}),
        ({7}, [7]),
        (frozenset({8}), [8]),
        (decimal.Decimal("1.5"), "1.5"),
    ],
)
def test_metadata_msgpack_cannot_encode_is_made_plain(value: Any, wire: Any) -> None:
    """Scalars give their item(), mappings become maps, sets lists, anything else its str()."""
    assert _metadata(value) == wire


def _nested(levels: int, inner: Any, kind: type = list) -> Any:
    value = inner
    for _ in range(levels):
        value = [value] if kind is list else {"k": value}
    return value


@pytest.mark.parametrize("kind", [list, dict])
def test_plain_cuts_nesting_deeper_than_32(kind: type) -> None:
    """plain() keeps a value 32 levels down and replaces one 33 levels down."""
    assert plain(_nested(32, "x", kind)) == _nested(32, "x", kind)
    assert plain(_nested(33, "x", kind)) == _nested(33, "<too deep>", kind)


@pytest.mark.parametrize(
    ("value", "made"),
    [
        (None, None),
        (True, True),
        (2.5, 2.5),
        (datetime.date(2026, 12, 7), "2026-12-07"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (decimal.Decimal("2.50"), "2.50"),
        (Colour.RED, "red"),
        ("a\ud800b", "a\ufffdb"),
        (b"a\xffb", "a\ufffdb"),
        (bytearray(b"ok"), "ok"),
        (memoryview(b"mv"), "mv"),
    ],
)
def test_plain_keeps_json_values_and_names_the_rest(value: Any, made: Any) -> None:
    """None, booleans and numbers stay; dates become ISO text, UUIDs, decimals and enum
    values text; bytes UTF-8 text; invalid UTF-8 and lone surrogates are replaced."""
    assert plain(value) == made


def test_text_writes_containers_as_json_with_str_for_the_rest() -> None:
    """A dict or list input becomes JSON text, values JSON cannot hold written with str()."""
    assert text({"d": decimal.Decimal("1.5"), "n": [1, None]}) == '{"d":"1.5","n":[1,null]}'
    assert (text(None), text(12), text("s")) == ("", "12", "s")


def test_ids_are_a_random_prefix_and_a_hex_counter_from_one() -> None:
    """Ids are 16 hex digits, a dash and 0x1, 0x2, ...; a reset changes the prefix."""
    ids = IdSource()
    first, second = ids.next(), ids.next()
    assert re.fullmatch("[0-9a-f]{16}-0x1", first)
    assert second == first[:-1] + "2"
    ids.reset()
    again = ids.next()
    assert again.endswith("-0x1")
    assert again != first


def test_an_id_source_knows_the_ids_it_made_since_its_last_reset() -> None:
    """made() is True for its own ids only: not a caller's, not those before a reset."""
    ids = IdSource()
    mine = ids.next()
    assert ids.made(mine)
    assert not ids.made("answer-8f3a")
    ids.reset()
    assert not ids.made(mine)
    assert ids.made(ids.next())


def test_one_buffer_serves_every_thread_under_the_gil_and_one_each_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under the GIL the encoding buffer is the process's; with the GIL off (forced) each
    thread starts with its own empty one."""
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(scratch.slot))
    thread.start()
    thread.join()
    assert seen[0] is scratch.slot
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    per_thread = make_scratch()
    thread = threading.Thread(target=lambda: seen.append(per_thread.slot))
    thread.start()
    thread.join()
    assert seen[1] == [bytearray()]
    assert seen[1] is not per_thread.slot
