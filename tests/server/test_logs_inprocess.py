"""Storing logs in-process on a real SQLite database: chunked inserts, the one-by-one
fallback, counters, ids, pages and their query.

These call banyan.server._logs directly, so `make mutate` sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from banyan._record import Record, encode
from banyan._wire import BATCH_ID_HEADER, BATCH_PATH, JSON, MSGPACK, Rejected
from banyan.server import _app, _db, _ingest, _limits, _logs, _rules, _run

from .helpers import body, record

P = "prj_a"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[_db.Database]:
    database = _db.Database(tmp_path / "t.db")
    yield database
    database.close()


def _decoded(records: list[Record]) -> _ingest.Decoded:
    return _ingest.decode(body(records), MSGPACK)


def _store(db: _db.Database, batch: _ingest.Decoded, single: int = 0, project: str = P) -> int:
    return asyncio.run(db.write(_logs.store, project, batch, single))


def _read(db: _db.Database, fn: Any, *args: Any) -> Any:
    return asyncio.run(db.read(fn, *args))


#: The logs columns these tests read, by name (a newer schema may add more).
TABLE = (
    "project_id", "id", "ts", "prompt_name", "version", "branch_name", "model", "duration_ms",
    "experiment_id", "experiment_version_id", "record", "subject",
)  # fmt: skip


def _table(db: _db.Database) -> list[tuple[Any, ...]]:
    with contextlib.closing(_db.connect(db.path)) as conn:
        return conn.execute(f"SELECT {', '.join(TABLE)} FROM logs ORDER BY rowid").fetchall()


def _expected(project: str, r: Record) -> tuple[Any, ...]:
    """A logs row as we promise it: project, indexed columns (NULL if absent), blob, subject."""
    return (
        project, r.id, r.ts, r.prompt_name, r.version, r.branch_name, r.model, r.duration_ms,
        r.experiment_id, r.experiment_version_id, encode(r), r.sticky_value,
    )  # fmt: skip


def _counters(db: _db.Database, project: str = P) -> dict[str, int]:
    return dict(_read(db, _logs._summary, project))


FULL = {
    "prompt_name": "p",
    "version": "v",
    "branch_name": "b",
    "model": "m",
    "duration_ms": 1.5,
    "experiment_id": "e",
    "experiment_version_id": "ev",
    "sticky_key": "k",
    "sticky_value": "s",
}


@pytest.mark.parametrize("n", [1, 4, 5, 1024, 1365, 1369])
def test_every_row_is_stored_in_order_with_our_columns(db: _db.Database, n: int) -> None:
    """A batch of any size across the INSERT chunks is stored row for row, in batch order."""
    records = [record(f"r{i}", ts=float(i), **(FULL if i % 2 else {})) for i in range(n)]
    assert _store(db, _decoded(records)) == n
    assert _table(db) == [_expected(P, r) for r in records]


@pytest.mark.parametrize(
    ("n", "chunks"),
    [(1, [1]), (4, [4]), (16, [16]), (1024, [1024]), (1365, [1024, 256, 64, 16, 4, 1]),
     (2051, [1024, 1024, 1, 1, 1])],
)  # fmt: skip
def test_a_batch_takes_the_largest_chunks_first(tmp_path: Path, n: int, chunks: list[int]) -> None:
    """Rows go in the largest multi-row INSERTs that fit (1024, 256, 64, 16, 4, 1) first."""
    _db.Database(tmp_path / "t.db").close()
    with contextlib.closing(_db.connect(tmp_path / "t.db")) as conn:
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        with _db.transaction(conn):
            _logs.store(conn, P, _decoded([record(f"c{i}") for i in range(n)]), 0)
        conn.set_trace_callback(None)
    inserts = [s for s in statements if s.startswith("INSERT OR IGNORE INTO logs")]
    # The trace shows each statement with its values bound: one "('prj_a', " per row.
    assert [s.count(f"('{P}', ") for s in inserts] == chunks


def test_an_empty_batch_stores_nothing_and_counts_one_batch(db: _db.Database) -> None:
    """A batch of no records inserts nothing and still counts as a batch."""
    assert _store(db, _ingest.Decoded()) == 0
    assert _counters(db) == {"stored": 0, "duplicates": 0, "rejected": 0, "batches": 1, "single": 0}


def test_counters_add_up_stored_duplicates_rejected_and_requests(db: _db.Database) -> None:
    """Each store adds its stored, duplicate and rejected counts, and one batch or one single."""
    first = [record("a"), record("b"), record("c")]
    assert _store(db, _decoded(first)) == 3
    again = _ingest.to_rows([record("a"), record("d"), record("x", ts=math.inf)], None)
    assert _store(db, again) == 1
    assert _store(db, _decoded([record("e")]), single=1) == 1
    assert _store(db, _decoded([record("e")]), single=1) == 0
    assert _counters(db) == {"stored": 5, "duplicates": 2, "rejected": 1, "batches": 2, "single": 2}
    assert _counters(db, "prj_other") == dict.fromkeys(_counters(db), 0)


def test_the_same_id_in_another_project_is_not_a_duplicate(db: _db.Database) -> None:
    """Ids are unique per project: one project's record does not shadow another's."""
    assert _store(db, _decoded([record("same")])) == 1
    assert _store(db, _decoded([record("same")]), project="prj_b") == 1
    assert _read(db, _logs._ids, P) == ["same"]
    assert _read(db, _logs._ids, "prj_b") == ["same"]


def _refusing(records: list[Record], refused: list[int]) -> _ingest.Decoded:
    """A decoded batch in which SQLite cannot bind the ts of the records at ``refused``."""
    batch = _decoded(records)
    for n in refused:
        batch.values[n * _rules.COLUMNS + 1] = 2**70
    return batch


def test_rows_sqlite_refuses_are_rejected_by_index_and_the_rest_kept(db: _db.Database) -> None:
    """The one-by-one fallback rejects each refused row by its batch index and keeps the rest."""
    _store(db, _decoded([record("r2")]))
    records = [record(f"r{i}", **(FULL if i == 3 else {})) for i in range(5)]
    batch = _refusing(records, [1, 4])
    assert _store(db, batch) == 2
    assert [(r.index, r.error.startswith("cannot store: ")) for r in batch.rejected] == [
        (1, True),
        (4, True),
    ]
    assert batch.count == 3
    assert batch.values[:: _rules.COLUMNS] == ["r0", "r2", "r3"]
    assert list(map(_sql, batch.subjects)) == [None, None, "s"]
    assert _table(db)[1:] == [_expected(P, records[0]), _expected(P, records[3])]
    assert _counters(db) == {"stored": 3, "duplicates": 1, "rejected": 2, "batches": 2, "single": 0}


def test_fallback_rejections_merge_with_decode_rejections_by_index(db: _db.Database) -> None:
    """Rejections found while storing are sorted in among those found while decoding."""
    items: list[Any] = [record("a"), record("b"), {"id": "bad"}, record("d")]
    batch = _ingest.decode(body(items), MSGPACK)
    batch.values[0 * _rules.COLUMNS + 1] = 2**70  # record a
    batch.values[2 * _rules.COLUMNS + 1] = 2**70  # record d, the third kept row
    assert _store(db, batch) == 1
    assert [r.index for r in batch.rejected] == [0, 2, 3]
    assert _read(db, _logs._ids, P) == ["b"]


def _sql(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def test_a_refused_row_undoes_the_chunk_before_the_fallback(db: _db.Database) -> None:
    """When a chunk fails, rows it inserted are rolled back, then stored once each."""
    records = [record(f"u{i}") for i in range(1030)]
    batch = _refusing(records, [1029])
    assert _store(db, batch) == 1029
    assert len(_table(db)) == 1029
    assert _counters(db)["duplicates"] == 0


def test_ids_lists_the_projects_ids_oldest_first(db: _db.Database) -> None:
    """_ids lists one project's record ids in the order they were stored."""
    _store(db, _decoded([record("z"), record("a")]))
    _store(db, _decoded([record("other")]), project="prj_b")
    _store(db, _decoded([record("m")]))
    assert _read(db, _logs._ids, P) == ["z", "a", "m"]
    assert _read(db, _logs._ids, "prj_none") == []


def test_summary_of_a_project_without_batches_is_zeros(db: _db.Database) -> None:
    """_summary names the five counters, all 0 for a project that never sent a batch."""
    assert _counters(db, "prj_none") == {
        "stored": 0,
        "duplicates": 0,
        "rejected": 0,
        "batches": 0,
        "single": 0,
    }


def test_json_and_rejected_records_are_not_in_the_table(db: _db.Database) -> None:
    """A JSON batch is stored as MessagePack; its rejected records never reach the table."""
    items = [msgspec.to_builtins(record("j", ts=1.0)), {"id": "bad"}]
    batch = _ingest.decode(msgspec.json.encode(items), JSON)
    assert _store(db, batch) == 1
    assert batch.rejected[0].index == 1
    assert isinstance(batch.rejected[0], Rejected)
    assert [row[1] for row in _table(db)] == ["j"]


KEY = "psk_inprocess_0123456789"
Call = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Callable[[Call], Any]], Any]:
    """Run a scenario against the app `banyan serve` loads, in this process through ASGI
    (lifespan included), with the worker's process-wide tuning left out."""
    path = tmp_path / "app.db"
    target: Any = str(path)  # a Path or a str, as `banyan serve --db` passes it
    _run.bootstrap(target, KEY)
    monkeypatch.setenv(_app.DB_ENV, str(path))
    monkeypatch.setattr(_app, "log_to_stderr", lambda level: None)
    monkeypatch.setattr(_app, "keep_freed_memory", lambda: False)
    monkeypatch.setattr(gc, "freeze", lambda: None)
    monkeypatch.setattr(gc, "set_threshold", lambda *thresholds: None)

    def run(scenario: Callable[[Call], Any]) -> Any:
        return asyncio.run(_serve(_app.create_app(), scenario))

    return run


async def _serve(app: Any, scenario: Callable[[Call], Any]) -> Any:
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    life = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def call(method: str, path: str, **kw: Any) -> httpx.Response:
                headers = {"X-API-Key": KEY, **kw.pop("headers", {})}
                return await client.request(method, path, headers=headers, **kw)

            return await scenario(call)
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await life


async def _post(
    call: Call, content: bytes | AsyncIterator[bytes], **headers: str
) -> httpx.Response:
    return await call(
        "POST", BATCH_PATH, content=content, headers={"Content-Type": MSGPACK, **headers}
    )


def test_batch_endpoint_answers_accepted_duplicates_and_rejected_by_index(served: Any) -> None:
    """POST a batch: 200 with accepted, duplicates and each rejected record by index."""

    async def scenario(call: Call) -> list[Any]:
        first = await _post(call, body([record("a"), record("b")]))
        second = await _post(call, body([record("b"), {"id": "bad"}, record("c")]))
        return [first, second]

    first, second = served(scenario)
    assert (first.status_code, first.json()) == (
        200,
        {"accepted": 2, "duplicates": 0, "rejected": []},
    )
    assert second.status_code == 200
    answer = second.json()
    assert (answer["accepted"], answer["duplicates"]) == (1, 1)
    assert [r["index"] for r in answer["rejected"]] == [1]
    assert BATCH_ID_HEADER.lower() not in second.headers


def test_batch_endpoint_takes_json_and_compressed_bodies(served: Any) -> None:
    """A gzip-compressed JSON batch is read by its Content-Type and Content-Encoding."""
    items = msgspec.json.encode([record("j1"), record("j2")])

    async def scenario(call: Call) -> httpx.Response:
        headers = {"Content-Type": JSON, "Content-Encoding": "gzip"}
        return await call("POST", BATCH_PATH, content=gzip.compress(items), headers=headers)

    answer = served(scenario)
    assert (answer.status_code, answer.json()["accepted"]) == (200, 2)


def test_batch_endpoint_echoes_the_batch_id_cut_to_200_characters(served: Any) -> None:
    """The batch id header comes back, at most 200 characters of it."""

    async def scenario(call: Call) -> list[httpx.Response]:
        short = await _post(call, body([record("x")]), **{BATCH_ID_HEADER: "b-1"})
        long = await _post(call, body([record("y")]), **{BATCH_ID_HEADER: "z" * 300})
        return [short, long]

    short, long = served(scenario)
    assert short.headers[BATCH_ID_HEADER] == "b-1"
    assert long.headers[BATCH_ID_HEADER] == "z" * 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"Content-Type": "text/plain"}, 415), ({"Content-Encoding": "br"}, 415)],
)
def test_batch_endpoint_refuses_unknown_formats(
    served: Any, headers: dict[str, str], status: int
) -> None:
    """An unknown Content-Type or Content-Encoding is refused whole, nothing stored."""

    async def scenario(call: Call) -> list[httpx.Response]:
        refused = await _post(call, body([record("x")]), **headers)
        return [refused, await call("GET", "/api/v2/logs/ids")]

    refused, ids = served(scenario)
    assert refused.status_code == status
    assert ids.json() == {"ids": []}


def test_ids_summary_and_pages_read_what_the_batches_stored(served: Any) -> None:
    """GET ids, summary and a page of logs answer from what was stored, for the key's project."""

    async def scenario(call: Call) -> list[httpx.Response]:
        await _post(call, body([record("a", ts=1.0), record("b", ts=2.0)]))
        await _post(call, body([record("a", ts=1.0), record("c", ts=3.0)]))
        return [
            await call("GET", "/api/v2/logs/ids"),
            await call("GET", "/api/v2/logs/summary"),
            await call("GET", "/api/v2/logs", params={"limit": "2", "order": "desc"}),
            await call("GET", "/api/v2/logs", params={"order": "sideways"}),
        ]

    ids, summary, page, bad = served(scenario)
    assert ids.json() == {"ids": ["a", "b", "c"]}
    assert summary.json() == {
        "stored": 3,
        "duplicates": 1,
        "rejected": 0,
        "batches": 2,
        "single": 0,
    }
    assert [log["id"] for log in page.json()["logs"]] == ["c", "b"]
    assert page.json()["next"] is not None
    assert (bad.status_code, bad.json()) == (400, {"error": "order must be asc or desc"})


def test_batch_without_a_content_type_is_415_naming_an_empty_one(served: Any) -> None:
    """A batch sent without Content-Type is 415, quoting the empty type it was given."""

    async def scenario(call: Call) -> httpx.Response:
        return await call("POST", BATCH_PATH, content=body([record("x")]))

    refused = served(scenario)
    assert (refused.status_code, refused.json()) == (
        415,
        {"error": f"unsupported Content-Type ''; use {MSGPACK} or {JSON}"},
    )


def test_a_project_holding_its_share_of_slots_leaves_others_theirs(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one slot per project, a project whose batch is stalled gets 429 for another, while
    another project's batch is taken (#14)."""
    monkeypatch.setenv(_limits.PER_PROJECT_ENV, "1")
    started, release = asyncio.Event(), asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield body([record("slow")])[:3]
        started.set()  # the server reads the body inside its slot
        await release.wait()
        yield body([record("slow")])[3:]

    async def scenario(call: Call) -> list[httpx.Response]:
        created = await call("POST", "/api/v2/projects", json={"name": "other"})
        other = {"X-API-Key": created.json()["api_key"]}
        held = asyncio.create_task(_post(call, stalled()))
        await started.wait()
        same = await _post(call, body([record("a")]))
        elsewhere = await _post(call, body([record("b")]), **other)
        release.set()
        return [same, elsewhere, await held]

    same, elsewhere, held = served(scenario)
    assert (same.status_code, elsewhere.status_code, held.status_code) == (429, 200, 200)


def _logs_of(served: Any, records: list[Record], *queries: dict[str, str]) -> list[httpx.Response]:
    """Store ``records`` through the batch endpoint, then GET /api/v2/logs with each query."""

    async def scenario(call: Call) -> list[httpx.Response]:
        await _post(call, body(records))
        return [await call("GET", "/api/v2/logs", params=query) for query in queries]

    return list(served(scenario))


def _ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [log["id"] for log in response.json()["logs"]]


#: Five records with every field a filter reads: ts 0 to 4, two prompts, experiments, variants.
PAGED = [
    record(f"p{i}", ts=float(i), prompt_name=f"pr{i % 2}", experiment_id=f"e{i % 2}",
           experiment_version_id=f"v{i % 3}")
    for i in range(5)
]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ({}, ["p0", "p1", "p2", "p3", "p4"]),
        ({"order": "asc"}, ["p0", "p1", "p2", "p3", "p4"]),
        ({"order": "desc"}, ["p4", "p3", "p2", "p1", "p0"]),
        ({"limit": "1"}, ["p0"]),
        ({"limit": "10000"}, ["p0", "p1", "p2", "p3", "p4"]),
        ({"prompt": "pr1"}, ["p1", "p3"]),
        ({"experiment": "e0"}, ["p0", "p2", "p4"]),
        ({"variant": "v1"}, ["p1", "p4"]),
        ({"since": "1.5", "until": "4"}, ["p2", "p3"]),
        ({"since": "1", "until": "1"}, []),
        ({"since": "3"}, ["p3", "p4"]),
        ({"until": "1.0"}, ["p0"]),
        ({"prompt": "pr0", "experiment": "e0", "variant": "v0"}, ["p0"]),
    ],
)
def test_a_page_selects_by_filters_in_order(
    served: Any, query: dict[str, str], ids: list[str]
) -> None:
    """GET /api/v2/logs filters by prompt, experiment, variant and time, in rowid order."""
    (page,) = _logs_of(served, PAGED, query)
    assert _ids_of(page) == ids


def test_pages_walk_the_records_with_a_cursor(served: Any) -> None:
    """Pages hold the records as sent; ``next`` walks on, both ways, keeping the filters."""
    first, back, narrow = _logs_of(
        served,
        PAGED,
        {"limit": "2"},
        {"limit": "3", "order": "desc"},
        {"prompt": "pr0", "limit": "1"},
    )
    assert first.json()["logs"] == [msgspec.to_builtins(r) for r in PAGED[:2]]
    cursors = {
        "next": first.json()["next"],
        "back": back.json()["next"],
        "narrow": narrow.json()["next"],
    }
    second, before, then = _logs_of(
        served,
        [],
        {"limit": "2", "cursor": cursors["next"]},
        {"limit": "3", "order": "desc", "cursor": cursors["back"]},
        {"prompt": "pr0", "limit": "5", "cursor": cursors["narrow"]},
    )
    assert (_ids_of(second), _ids_of(before), _ids_of(then)) == (
        ["p2", "p3"],
        ["p1", "p0"],
        ["p2", "p4"],
    )
    assert (before.json()["next"], then.json()["next"]) == (None, None)


def test_a_full_last_page_still_gives_a_cursor_to_an_empty_one(served: Any) -> None:
    """A page exactly as long as its limit gives ``next``; the page after it is empty."""
    (page,) = _logs_of(served, [record("only")], {"limit": "1"})
    assert page.json()["next"] is not None
    (after,) = _logs_of(served, [], {"limit": "1", "cursor": page.json()["next"]})
    assert after.json() == {"logs": [], "next": None}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"order": "up"}, "order must be asc or desc"),
        ({"order": "DESC"}, "order must be asc or desc"),
        ({"limit": "0"}, "limit must be between 1 and 10000"),
        ({"limit": "10001"}, "limit must be between 1 and 10000"),
        ({"limit": "ten"}, "limit must be a number, got 'ten'"),
        ({"limit": "1.5"}, "limit must be a number, got '1.5'"),
        ({"since": "soon"}, "since must be a number, got 'soon'"),
        ({"since": "nan"}, "since must be a finite number"),
        ({"until": "inf"}, "until must be a finite number"),
        ({"until": "-inf"}, "until must be a finite number"),
    ],
)
def test_a_page_with_a_bad_parameter_is_400(
    served: Any, query: dict[str, str], message: str
) -> None:
    """A bad order, limit, time or cursor is 400 with our reason."""
    (refused,) = _logs_of(served, [], query)
    assert (refused.status_code, refused.json()) == (400, {"error": message})


def test_a_page_from_a_cursor_we_did_not_give_is_400(served: Any) -> None:
    """A cursor that is not one of ours is 400, naming the cursor (its form is ours to change)."""
    (refused,) = _logs_of(served, [], {"cursor": "x"})
    assert refused.status_code == 400
    assert "cursor" in refused.json()["error"]
