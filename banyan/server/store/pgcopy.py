"""Binary COPY of row tuples with no Python call per row (#17).

psycopg's ``write_row`` costs three Python calls a row (its coroutine, the
formatter's method, then the C row formatter): about half of the store's client
CPU for a batch of ~1.2 KB log rows. ``copy_rows`` maps the C formatter over a
chunk of rows into one buffer (the binary COPY header first, the trailer last),
and sends each chunk with one ``write``. If psycopg no longer has that
formatter where this module looks, ``write_row`` does the work, more slowly.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

try:
    from psycopg._copy_base import format_row_binary as _format_row
except ImportError:  # pragma: no cover - another psycopg layout: write_row
    _format_row = None

Row = Sequence[Any]

#: PostgreSQL's binary COPY header (signature, flags, extension length) and trailer.
_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_TRAILER = b"\xff\xff"
#: Rows formatted per write: ~150 KB of 1.2 KB log rows, whatever the batch's size.
CHUNK = 128


async def copy_rows(
    conn: AsyncConnection[Any], statement: bytes, types: list[str], rows: Sequence[Row]
) -> None:
    """Run ``COPY ... FROM STDIN (FORMAT BINARY)`` with ``rows`` of PostgreSQL ``types``."""
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(types)
        if _format_row is None:
            for row in rows:
                await copy.write_row(row)
            return
        transformer, out = itertools.repeat(copy.formatter.transformer), bytearray(_HEADER)
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            collections.deque(map(_format_row, chunk, transformer, itertools.repeat(out)), 0)
            await copy.write(out)
            out = bytearray()
        await copy.write(_TRAILER)
