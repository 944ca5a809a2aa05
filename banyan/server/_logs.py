"""Storing usage logs: batch ingest, ids, summary (and ``store`` for the 1.0.1 endpoint)."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

import msgspec

from banyan._wire import BATCH_ID_HEADER, MAX_BATCH_BYTES, BatchResult, Rejected
from banyan.server import _ingest, _rules
from banyan.server._http import HTTPError, Request, Response, json_response

#: Rows per multi-row INSERT, largest first. One statement is one sqlite3_step,
#: so the GIL is released for the whole chunk instead of once per row
#: (executemany), and the event loop can decode the next batch meanwhile. The
#: project id is bound once per statement, as ?1; 1 + 14 * 1024 parameters
#: stay below SQLite's 32,766.
_SIZES = (1024, 256, 64, 16, 4, 1)
#: A table row's values after the project id: a batch's columns, then the subject.
_WIDTH = _rules.COLUMNS + 1


def _inserts(table: str, names: tuple[str, ...]) -> dict[int, str]:
    """Multi-row INSERT OR IGNORE statements of each size in _SIZES, project id first."""
    head = f"INSERT OR IGNORE INTO {table} (project_id, {', '.join(names)}) VALUES "
    row = f"(?1, {', '.join('?' * len(names))})"
    return {size: head + ", ".join([row] * size) for size in _SIZES}


_INSERTS = _inserts("logs", (*_rules.COLUMN_NAMES, "record", "subject"))
_SCORE_INSERTS = _inserts("scores", (*_rules.SCORE_COLUMN_NAMES, "record"))
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
        _insert(conn, project_id, _table_rows(batch), _INSERTS)
        _insert(conn, project_id, batch.scores, _SCORE_INSERTS)
        inserted = conn.total_changes - before
    except _STORE_ERRORS:
        conn.execute("ROLLBACK TO batch")
        inserted = _store_one_by_one(conn, project_id, batch)
        inserted += _scores_one_by_one(conn, project_id, batch)
        batch.rejected.sort(key=lambda r: r.index)
    conn.execute("RELEASE batch")
    duplicates = batch.count - inserted
    rejected = len(batch.rejected)
    conn.execute(_COUNT, (project_id, inserted, duplicates, rejected, 1 - single, single))
    return inserted


def _table_rows(batch: _ingest.Decoded) -> list[Any]:
    """The batch's values with each record's subject after its columns (the table's order)."""
    width = _rules.COLUMNS
    values: list[Any] = [None] * (batch.count * _WIDTH)
    # Strided copies run in C; the PostgreSQL engine reads batch.values as they are.
    for column in range(width):
        values[column::_WIDTH] = batch.values[column::width]
    values[width::_WIDTH] = batch.subjects
    return values


def _insert(
    conn: sqlite3.Connection, project_id: str, values: list[Any], inserts: dict[int, str]
) -> None:
    start, width = 0, inserts[1].count("?") - 1
    for size in _SIZES:
        span = size * width
        while len(values) - start >= span:
            conn.execute(inserts[size], [project_id, *values[start : start + span]])
            start += span


def _store_one_by_one(conn: sqlite3.Connection, project_id: str, batch: _ingest.Decoded) -> int:
    inserted, kept, subjects, width = 0, [], [], _rules.COLUMNS
    for n, index in enumerate(batch.indexes):
        row = batch.values[n * width : (n + 1) * width]
        try:
            inserted += conn.execute(_INSERTS[1], [project_id, *row, batch.subjects[n]]).rowcount
            kept.extend(row)
            subjects.append(batch.subjects[n])
        except _STORE_ERRORS as exc:
            batch.rejected.append(Rejected(index, f"cannot store: {exc}"))
    batch.values, batch.subjects = kept, subjects
    return inserted


def _scores_one_by_one(conn: sqlite3.Connection, project_id: str, batch: _ingest.Decoded) -> int:
    inserted, kept, indexes, width = 0, [], [], _rules.SCORE_COLUMNS
    for n, index in enumerate(batch.score_indexes):
        row = batch.scores[n * width : (n + 1) * width]
        try:
            inserted += conn.execute(_SCORE_INSERTS[1], [project_id, *row]).rowcount
            kept.extend(row)
            indexes.append(index)
        except _STORE_ERRORS as exc:
            batch.rejected.append(Rejected(index, f"cannot store: {exc}"))
    batch.scores, batch.score_indexes = kept, indexes
    return inserted


async def ingest_batch(req: Request) -> Response:
    """POST /api/v2/logs/batch: store an array of records, reject bad ones by index."""
    kind = _ingest.media_type(req.headers.get("content-type", ""))
    with req.state.inflight.slot(req.project_id):
        body = await req.body(MAX_BATCH_BYTES)
        body = _ingest.decompress(body, req.headers.get("content-encoding", ""))
        batch = _ingest.decode(body, kind)
        inserted = await req.state.db.write(store, req.project_id, batch, 0)
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
    return json_response({"ids": await req.state.db.read(_ids, req.project_id)})


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
    return json_response(await req.state.db.read(_summary, req.project_id))


#: Records per page of GET /api/v2/logs: the default and the most a request may ask.
PAGE_SIZE, MAX_PAGE_SIZE = 1000, 10_000
#: Filters of GET /api/v2/logs: query parameter -> SQL condition.
_FILTERS = {
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


def page_query(query: dict[str, str]) -> tuple[str, list[Any]]:
    """The SQL (after ``WHERE project_id = ?``) and arguments of one page of logs."""
    descending = query.get("order", "asc") == "desc"
    if query.get("order", "asc") not in ("asc", "desc"):
        raise HTTPError(400, "order must be asc or desc")
    limit = _number(query, "limit", int) if "limit" in query else PAGE_SIZE
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise HTTPError(400, f"limit must be between 1 and {MAX_PAGE_SIZE}")
    sql, args = "", []
    for name, condition in _FILTERS.items():
        if name in query:
            sql += f" AND {condition}"
            args.append(_number(query, name, float) if name in ("since", "until") else query[name])
    if "cursor" in query:
        sql += " AND rowid < ?" if descending else " AND rowid > ?"
        args.append(_number(query, "cursor", int))
    return f"{sql} ORDER BY rowid {'DESC' if descending else 'ASC'} LIMIT ?", [*args, limit]


def _page(conn: sqlite3.Connection, project_id: str, query: dict[str, str]) -> dict[str, Any]:
    sql, args = page_query(query)
    # NOT INDEXED: walk the table in rowid order from the cursor; the (project_id, id)
    # index would make SQLite sort every row of the project for each page.
    rows = conn.execute(
        f"SELECT rowid, record FROM logs NOT INDEXED WHERE project_id = ?{sql}", [project_id, *args]
    ).fetchall()
    more = len(rows) == args[-1]
    return {
        "logs": [_decode_record(blob) for _, blob in rows],
        "next": str(rows[-1][0]) if more else None,
    }


_decode_record = msgspec.msgpack.Decoder(dict[str, Any]).decode


async def list_logs(req: Request) -> Response:
    """GET /api/v2/logs: one page of stored records, filtered, with the next page's cursor."""
    return json_response(await req.state.db.read(_page, req.project_id, req.query))
