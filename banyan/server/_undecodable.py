"""Bytes the decoder refuses, and the reason the server gives for them (#13).

The reason is ours where the decoder's text is not a promise we can keep: its
wording for a string that is not UTF-8 changed between msgspec versions (a
``UnicodeDecodeError`` for MessagePack, then a ``DecodeError``), and the
interpreter's for nesting too deep names no field.
"""

from __future__ import annotations

import msgspec

from banyan._wire import JSON, msgpack_array_header

#: msgspec raises UnicodeDecodeError (older versions) or DecodeError for a MessagePack
#: string that is not UTF-8, and RecursionError for nesting deeper than about 1,000 levels.
UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
#: Our reason for a RecursionError, whose own text is the interpreter's.
TOO_DEEP = "nested too deeply for the decoder"
#: Our reason for a string that is not UTF-8.
NOT_UTF8 = "a string is not valid UTF-8"

_items = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode
_text = msgspec.msgpack.Decoder(str).decode
#: MessagePack headers of a str (fixstr, str8/16/32), of a map and of an array, by first byte.
_STRS = frozenset({*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB})
_SIZED = {0xDC: (3, 1), 0xDD: (5, 1), 0xDE: (3, 2), 0xDF: (5, 2)}


def undecodable(exc: BaseException, raw: bytes | msgspec.Raw | None = None, kind: str = "") -> str:
    """The reason given for one of ``UNDECODABLE``: ours for too deep and for a string that is
    not UTF-8 (found in ``raw``, the ``kind`` body or record that failed), else the decoder's."""
    if isinstance(exc, RecursionError):
        return TOO_DEEP
    if isinstance(exc, UnicodeDecodeError) or (raw is not None and not _utf8(bytes(raw), kind)):
        return NOT_UTF8
    return str(exc)


def _utf8(data: bytes, kind: str) -> bool:
    """False when ``data`` (JSON, else MessagePack) holds a string that is not UTF-8."""
    if kind == JSON:
        try:
            data.decode()
        except UnicodeDecodeError:
            return False
        return True
    try:
        return not _bad_text(data)
    except RecursionError:
        return True  # nesting too deep to look into: the decoder's reason stands


def _bad_text(data: bytes) -> bool:
    if data and data[0] in _STRS:
        try:
            _text(data)
        except UNDECODABLE:
            return True
        return False
    return any(_bad_text(bytes(item)) for item in entries(data) or ())


def entries(data: bytes) -> list[msgspec.Raw] | None:
    """The items of a MessagePack array, or the keys and values of a map (alternating);
    None for any other value or a malformed one."""
    head = data[0] if data else 0
    if 0x80 <= head <= 0x9F:
        start, count = 1, (head & 0x0F) * (2 if head < 0x90 else 1)
    elif head in _SIZED:
        start, per_entry = _SIZED[head]
        count = int.from_bytes(data[1:start], "big") * per_entry
    else:
        return None
    if count > len(data):
        return None
    try:
        return _items(msgpack_array_header(count) + data[start:])
    except UNDECODABLE:
        return None
