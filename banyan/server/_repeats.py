"""Finding a key that a record map holds twice (#14).

Decoders keep the last value of a repeated key, so a map with ``id`` twice
would be stored under whichever came last; the batch path rejects such a
record instead. Only the record's own keys count, not those inside metadata.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from banyan._wire import MSGPACK
from banyan.server._undecodable import UNDECODABLE, entries


def repeated_key(raw: msgspec.Raw | bytes, kind: str) -> str | None:
    """A key that a record map (MessagePack or JSON) holds twice, None when there is none."""
    seen: set[str] = set()
    for key in (_msgpack_keys if kind == MSGPACK else _json_keys)(bytes(raw)):
        if key in seen:
            return key
        seen.add(key)
    return None


def _msgpack_keys(data: bytes) -> list[str]:
    head = data[0] if data else 0
    items = entries(data) if 0x80 <= head <= 0x8F or head in (0xDE, 0xDF) else None
    try:
        keys = [msgspec.msgpack.decode(raw) for raw in (items or ())[0::2]]
    except UNDECODABLE:
        return []
    return [key for key in keys if isinstance(key, str)]


def _json_keys(data: bytes) -> list[str]:
    objects: list[list[tuple[str, Any]]] = []

    def keep(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        objects.append(pairs)
        return {}

    # The hook sees nested objects first and the record's own map last.
    if not data.lstrip().startswith(b"{"):
        return []
    try:
        json.loads(data, object_pairs_hook=keep)
    except (ValueError, RecursionError):
        return []
    return [key for key, _ in objects[-1]]
