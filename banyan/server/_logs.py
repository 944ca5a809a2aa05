"""Storing usage logs: batch ingest, ids, summary (and ``store`` for the 1.0.1 endpoint)."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

import msgspec

from banyan._wire import BATCH_ID_HEADER, MAX_BATCH_BYTES, BatchResult, Rejected
from banyan.server import _ingest
from banyan.server._http import HTTPError, Request, Response, json_response
from banyan.server.store import Page

#: Rows per multi-row INSERT, largest first. One statement is one sqlite3_step,
#: so the GIL is released for the whole chunk instead of once per row
#: (executemany), and the event loop can decode the next batch meanwhile. The
#: project id is bound once per statement, as ?1; 1 + 11 * 1024 parameters
#: stay below SQLite's 32,766.
_SIZES = (1024, 256, 64, 16, 4, 1)
#: A table row's values after the project id: a batch's columns, then the subject.
_WIDTH = _ingest.COLUMNS + 1
_INSERTS = {
    size: "INSERT OR IGNORE INTO logs VALUES "
    + ", ".join([f"(?1, {', '.join('?' * _WIDTH)})"] * size)
    for size in _SIZES
}
_COUNT = """
INSERT INTO ingest_counters (project_id, stored, duplicates, rejected, batches, single)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (project_id) DO UPDATE SET
    stored = stored + excluded.stored,
    duplicates = duplicates + excluded.duplicates,
    rejected = rejected + excluded.rejected,
    batches = batches + excluded.batches,
    single = single + excluded.single
"""
_STORE_ERRORS = (sqlite3.Error, ValueError, OverflowError, UnicodeError)


def store(conn: sqlite3.Connection, project_id: str, batch: _ingest.Decoded, single: int) -> int:
    """Insert a decoded batch (inside the caller's transaction); returns rows inserted.

    A row SQLite refuses is moved to ``batch.rejected`` instead of failing the batch.
    """
    conn.execute("SAVEPOINT batch")
    try:
        before = conn.total_changes
        _insert(conn, project_id, _table_rows(batch))
        inserted = conn.total_changes - before
    except _STORE_ERRORS:
        conn.execute("ROLLBACK TO batch")
        inserted = _store_one_by_one(conn, project_id, batch)
    conn.execute("RELEASE batch")
    duplicates = batch.count - inserted
    rejected = len(batch.rejected)
    conn.execute(_COUNT, (project_id, inserted, duplicates, rejected, 1 - single, single))
    return inserted


def _table_rows(batch: _ingest.Decoded) -> list[Any]:
    """The batch's values with each record's subject after its columns (the table's order)."""
    width = _ingest.COLUMNS
    values: list[Any] = [None] * (batch.count * _WIDTH)
    # Strided copies run in C; the PostgreSQL engine reads batch.values as they are.
    for column in range(width):
        values[column::_WIDTH] = batch.values[column::width]
    values[width::_WIDTH] = batch.subjects
    return values


def _insert(conn: sqlite3.Connection, project_id: str, values: list[Any]) -> None:
    start = 0
    for size in _SIZES:
        span = size * _WIDTH
        while len(values) - start >= span:
            conn.execute(_INSERTS[size], [project_id, *values[start : start + span]])
            start += span


def _store_one_by_one(conn: sqlite3.Connection, project_id: str, batch: _ingest.Decoded) -> int:
    inserted, kept, subjects, width = 0, [], [], _ingest.COLUMNS
    for n, index in enumerate(batch.indexes):
        row = batch.values[n * width : (n + 1) * width]
        try:
            inserted += conn.execute(_INSERTS[1], [project_id, *row, batch.subjects[n]]).rowcount
            kept.extend(row)
            subjects.append(batch.subjects[n])
        except _STORE_ERRORS as exc:
            batch.rejected.append(Rejected(index, f"cannot store: {exc}"))
    batch.values, batch.subjects = kept, subjects
    batch.rejected.sort(key=lambda r: r.index)
    return inserted


async def ingest_batch(req: Request) -> Response:
    """POST /api/v2/logs/batch: store an array of records, reject bad ones by index."""
    kind = _ingest.media_type(req.headers.get("content-type", ""))
    with req.state.inflight.slot(req.project_id):
        body = await req.body(MAX_BATCH_BYTES)
        body = _ingest.decompress(body, req.headers.get("content-encoding", ""))
        batch = _ingest.decode(body, kind)
        inserted = await req.state.store.ingest(req.project_id, batch, 0)
    result = BatchResult(inserted, batch.count - inserted, batch.rejected)
    headers = {}
    if BATCH_ID_HEADER.lower() in req.headers:
        headers[BATCH_ID_HEADER] = req.headers[BATCH_ID_HEADER.lower()][:200]
    return Response(200, msgspec.json.encode(result), headers)


def _ids(conn: sqlite3.Connection, project_id: str) -> list[str]:
    rows = conn.execute("SELECT id FROM logs WHERE project_id = ? ORDER BY rowid", (project_id,))
    return [r[0] for r in rows]


async def list_ids(req: Request) -> Response:
    """GET /api/v2/logs/ids: every stored record id of the project, oldest first."""
    return json_response({"ids": await req.state.store.log_ids(req.project_id)})


def _summary(conn: sqlite3.Connection, project_id: str) -> dict[str, int]:
    row = conn.execute(
        "SELECT stored, duplicates, rejected, batches, single FROM ingest_counters"
        " WHERE project_id = ?",
        (project_id,),
    ).fetchone()
    names = ("stored", "duplicates", "rejected", "batches", "single")
    return dict(zip(names, row or (0, 0, 0, 0, 0), strict=True))


async def summary(req: Request) -> Response:
    """GET /api/v2/logs/summary: stored, duplicate, rejected and request counters."""
    return json_response(await req.state.store.summary(req.project_id))


#: Records per page of GET /api/v2/logs: the default and the most a request may ask.
PAGE_SIZE, MAX_PAGE_SIZE = 1000, 10_000
#: Filters of GET /api/v2/logs: query parameter -> SQL condition (both engines' placeholders).
FILTERS = {
    "prompt": "prompt_name = ?",
    "experiment": "experiment_id = ?",
    "variant": "experiment_version_id = ?",
    "since": "ts >= ?",
    "until": "ts < ?",
}


def _number(query: dict[str, str], name: str, kind: type[float] | type[int]) -> Any:
    try:
        value = kind(query[name])
    except ValueError:
        raise HTTPError(400, f"{name} must be a number, got {query[name]!r}") from None
    if not math.isfinite(value):
        raise HTTPError(400, f"{name} must be a finite number")
    return value


def page_of(query: dict[str, str]) -> Page:
    """The checked page request of GET /api/v2/logs; 400 for a bad parameter."""
    if query.get("order", "asc") not in ("asc", "desc"):
        raise HTTPError(400, "order must be asc or desc")
    limit = _number(query, "limit", int) if "limit" in query else PAGE_SIZE
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise HTTPError(400, f"limit must be between 1 and {MAX_PAGE_SIZE}")
    filters = {
        name: _number(query, name, float) if name in ("since", "until") else query[name]
        for name in FILTERS
        if name in query
    }
    return Page(filters, query.get("cursor"), limit, query.get("order") == "desc")


def _page(conn: sqlite3.Connection, project_id: str, page: Page) -> tuple[list[bytes], str | None]:
    sql = "".join(f" AND {FILTERS[name]}" for name in page.filters)
    args: list[Any] = [project_id, *page.filters.values()]
    if page.cursor is not None:
        sql += " AND rowid < ?" if page.descending else " AND rowid > ?"
        args.append(int(page.cursor))
    sql += f" ORDER BY rowid {'DESC' if page.descending else 'ASC'} LIMIT ?"
    # NOT INDEXED: walk the table in rowid order from the cursor; the (project_id, id)
    # index would make SQLite sort every row of the project for each page.
    rows = conn.execute(
        f"SELECT rowid, record FROM logs NOT INDEXED WHERE project_id = ?{sql}", [*args, page.limit]
    ).fetchall()
    return [blob for _, blob in rows], str(rows[-1][0]) if len(rows) == page.limit else None


_decode_record = msgspec.msgpack.Decoder(dict[str, Any]).decode


async def list_logs(req: Request) -> Response:
    """GET /api/v2/logs: one page of stored records, filtered, with the next page's cursor."""
    try:
        records, after = await req.state.store.logs_page(req.project_id, page_of(req.query))
    except ValueError:
        raise HTTPError(
            400, f"cursor {req.query.get('cursor')!r} is not one this server gave"
        ) from None
    return json_response({"logs": [_decode_record(blob) for blob in records], "next": after})
