"""POST /api/v2/logs/batch: formats, encodings, idempotency, rejection and limits."""

from __future__ import annotations

import gzip
import select
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import msgspec
import orjson
import pytest
import zstandard
from serverproc import Server, start_server

from banyan._wire import (
    BATCH_ID_HEADER,
    BATCH_PATH,
    JSON,
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MSGPACK,
    msgpack_array_header,
)
from banyan.server._ingest import MAX_GZIP_MEMBERS
from banyan.server._undecodable import NOT_UTF8

from .helpers import body, call, open_batch, post_batch, record, status_of, unique


def test_msgpack_batch_is_stored(server: Server) -> None:
    """A MessagePack batch is stored and every record counted as accepted."""
    records = [record(f"id-{i}", metadata={"i": i}) for i in range(50)]
    response = post_batch(server, body(records))
    assert response.status_code == 200
    assert response.json() == {"accepted": 50, "duplicates": 0, "rejected": []}
    assert sorted(server.stored_ids()) == sorted(r.id for r in records)
    assert server.summary()["stored"] == 50


def test_json_batch_is_stored(server: Server) -> None:
    """A JSON array body with Content-Type application/json is accepted too."""
    records = [msgspec.to_builtins(record(f"j-{i}")) for i in range(5)]
    response = post_batch(server, orjson.dumps(records), {"Content-Type": JSON})
    assert response.json()["accepted"] == 5
    assert len(server.stored_ids()) == 5


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_compressed_batch_is_stored(server: Server, encoding: str) -> None:
    """zstd and gzip Content-Encodings are undone before decoding."""
    raw = body([record(f"{encoding}-{i}") for i in range(20)])
    packed = zstandard.compress(raw) if encoding == "zstd" else gzip.compress(raw)
    response = post_batch(server, packed, {"Content-Encoding": encoding})
    assert response.json()["accepted"] == 20


def test_same_batch_twice_is_all_duplicates(server: Server) -> None:
    """Resending a batch stores nothing new and counts every record as a duplicate."""
    payload = body([record(f"dup-{i}") for i in range(30)])
    first = post_batch(server, payload, {BATCH_ID_HEADER: "b-1"})
    second = post_batch(server, payload, {BATCH_ID_HEADER: "b-1"})
    assert first.json() == {"accepted": 30, "duplicates": 0, "rejected": []}
    assert second.json() == {"accepted": 0, "duplicates": 30, "rejected": []}
    assert second.headers[BATCH_ID_HEADER] == "b-1"
    summary = server.summary()
    assert (summary["stored"], summary["duplicates"], summary["batches"]) == (30, 30, 2)
    assert len(server.stored_ids()) == 30


def test_repeated_id_inside_one_batch_is_a_duplicate(server: Server) -> None:
    """Two records with one id (and ts) in a batch: the first is kept, the second a duplicate.

    PostgreSQL identifies a record by id and ts (docs/storage.md), so both carry one ts.
    """
    twins = [record("same", ts=1000.0, input=text) for text in ("a", "b")]
    response = post_batch(server, body(twins))
    assert response.json() == {"accepted": 1, "duplicates": 1, "rejected": []}


def test_bad_records_are_rejected_by_index_and_good_ones_kept(server: Server) -> None:
    """Unknown field, wrong type, empty or too long id, non-map: rejected by index, rest stored."""
    good = record("good-1")
    items = [
        good,
        {"id": "x1", "ts": 1.0, "input": "a", "output": "b", "surprise": 1},
        {"id": "x2", "ts": "yesterday", "input": "a", "output": "b"},
        {"id": "", "ts": 1.0, "input": "a", "output": "b"},
        {"id": "x" * 129, "ts": 1.0, "input": "a", "output": "b"},
        42,
        {"ts": 1.0, "input": "a", "output": "b"},
        record("good-2"),
    ]
    result = post_batch(server, body(items)).json()
    assert result["accepted"] == 2
    assert [r["index"] for r in result["rejected"]] == [1, 2, 3, 4, 5, 6]
    errors = [r["error"] for r in result["rejected"]]
    assert "surprise" in errors[0]
    assert "ts" in errors[1]
    assert "id" in errors[2]
    assert "id" in errors[3]
    assert sorted(server.stored_ids()) == ["good-1", "good-2"]
    assert server.summary()["rejected"] == 6


def test_string_that_is_not_utf8_is_rejected_by_index(server: Server) -> None:
    """A MessagePack string with invalid UTF-8 is rejected by index, with our reason."""
    bad = msgspec.msgpack.encode(record("utf-2", input="AB")).replace(b"\xa2AB", b"\xa2\xff\xfe")
    payload = b"\x92" + msgspec.msgpack.encode(record("utf-1")) + bad
    response = post_batch(server, payload)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    [rejected] = response.json()["rejected"]
    assert rejected["index"] == 1
    assert rejected["error"] == NOT_UTF8


def test_exotic_metadata_is_stored(server: Server) -> None:
    """Metadata with int keys, datetimes and bytes (possible in MessagePack) is stored."""
    import datetime

    meta = {"nested": {1: "one", 2.5: b"\x00\x01"}, "when": datetime.datetime(2024, 1, 2)}
    response = post_batch(server, body([record("meta-1", metadata=meta)]))
    assert response.json()["accepted"] == 1


def test_non_finite_numbers_are_rejected(server: Server) -> None:
    """A NaN timestamp or infinite duration is rejected, not stored as garbage."""
    items = [record("nan", ts=float("nan")), record("inf", duration_ms=float("inf"))]
    result = post_batch(server, body(items)).json()
    assert result["accepted"] == 0
    assert [r["index"] for r in result["rejected"]] == [0, 1]


def test_empty_array_is_fine(server: Server) -> None:
    """An empty batch is answered 200 with nothing accepted."""
    assert post_batch(server, body([])).json() == {"accepted": 0, "duplicates": 0, "rejected": []}


@pytest.mark.parametrize(
    ("content", "headers", "needle"),
    [
        (b"\x01", {}, "array"),
        (b"\xdd\x00\x00\x00\x05\x01", {}, "array"),
        (b"", {}, "array"),
        (b'{"id": 1}', {"Content-Type": JSON}, "array"),
        (b"[1, 2", {"Content-Type": JSON}, "array"),
        (b"not zstd", {"Content-Encoding": "zstd"}, "zstd"),
        (b"not gzip", {"Content-Encoding": "gzip"}, "gzip"),
        (gzip.compress(b"\x90")[:-6], {"Content-Encoding": "gzip"}, "gzip"),
    ],
)
def test_undecodable_body_is_400(
    shared_server: Server, content: bytes, headers: dict[str, str], needle: str
) -> None:
    """A body that is not an array, is truncated, or is badly compressed: 400 naming it."""
    response = post_batch(shared_server, content, headers)
    assert response.status_code == 400
    assert needle in response.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "text/plain"}, {"Content-Type": ""}, {"Content-Encoding": "br"}],
)
def test_unsupported_media_is_415(shared_server: Server, headers: dict[str, str]) -> None:
    """An unknown Content-Type or Content-Encoding is refused with 415."""
    response = post_batch(shared_server, body([record()]), headers)
    assert response.status_code == 415
    assert "error" in response.json()


@pytest.mark.parametrize("kind", [MSGPACK, JSON])
def test_too_many_records_is_413(server: Server, kind: str) -> None:
    """More than MAX_BATCH_RECORDS records, in either format: 413 and nothing stored."""
    items = [
        {"id": str(i), "ts": 0, "input": "", "output": ""} for i in range(MAX_BATCH_RECORDS + 1)
    ]
    if kind == JSON:
        response = post_batch(server, orjson.dumps(items), {"Content-Type": JSON})
    else:
        response = post_batch(server, body(items))
    assert response.status_code == 413
    assert server.summary()["stored"] == 0


def test_huge_array_header_in_a_small_body_is_413(shared_server: Server) -> None:
    """A 1 KB zstd body declaring 33.5 million elements is refused by its header: 413."""
    count = 33_500_000
    packed = zstandard.compress(b"\xdd" + count.to_bytes(4, "big") + b"\xc0" * count)
    assert len(packed) < 2048
    response = post_batch(shared_server, packed, {"Content-Encoding": "zstd"})
    assert response.status_code == 413
    assert str(MAX_BATCH_RECORDS) in response.json()["error"]


def _deep_record(levels: int) -> bytes:
    """A MessagePack record whose metadata nests ``levels`` maps deep."""
    head = msgspec.msgpack.encode({"id": unique("deep"), "ts": 1.0, "input": "", "output": ""})
    return b"\x85" + head[1:] + b"\xa8metadata" + b"\x81\xa1k" * levels + b"\xc0"


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"\x91" * 100_000 + b"\xc0", MSGPACK),
        (b"[" * 100_000 + b"]" * 100_000, JSON),
        (b"\x92" + msgspec.msgpack.encode(record()) + _deep_record(2000), MSGPACK),
        (b'[{"id": "deep", "ts": 1, "metadata": ' + b'{"k": ' * 2000 + b"1" + b"}" * 2001 + b"]",
         JSON),
    ],
)  # fmt: skip
def test_body_nested_too_deeply_is_400(shared_server: Server, content: bytes, kind: str) -> None:
    """Nesting past the decoder's depth limit is a malformed body (400), not a server error."""
    response = post_batch(shared_server, content, {"Content-Type": kind})
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["error"]


def test_single_record_nested_too_deeply_is_400(shared_server: Server) -> None:
    """POST /api/logs/prompt-usage with metadata nested 2,000 levels: 400."""
    content = b'{"input": "i", "output": "o", "metadata": ' + b'{"k": ' * 2000 + b"1" + b"}" * 2001
    response = call(shared_server, "POST", "/api/logs/prompt-usage", content=content)
    assert response.status_code == 400, response.text


def _packed(encoding: str, *parts: bytes) -> bytes:
    """``parts`` compressed one by one and concatenated: gzip members or zstd frames."""
    one = zstandard.compress if encoding == "zstd" else gzip.compress
    return b"".join(map(one, parts))


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_every_gzip_member_and_zstd_frame_is_read(server: Server, encoding: str) -> None:
    """A body split across several gzip members or zstd frames is read whole."""
    raw = body([record(f"part-{i}") for i in range(30)])
    packed = _packed(encoding, raw[:100], raw[100:500], raw[500:])
    response = post_batch(server, packed, {"Content-Encoding": encoding})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 30


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
@pytest.mark.parametrize("tail", [b"garbage!", b"\x1f\x8b\x08\x00garbage!"])
def test_bytes_after_the_last_member_or_frame_are_400(
    shared_server: Server, encoding: str, tail: bytes
) -> None:
    """Trailing bytes that are not a whole gzip member or zstd frame: 400, nothing stored."""
    rid = unique("tail")
    packed = _packed(encoding, body([record(rid)])) + tail
    response = post_batch(shared_server, packed, {"Content-Encoding": encoding})
    assert response.status_code == 400, response.text
    assert encoding in response.json()["error"]
    assert rid not in shared_server.stored_ids()


def test_gzip_members_past_the_limit_are_413(shared_server: Server) -> None:
    """A gzip body of more members than MAX_GZIP_MEMBERS is refused with 413."""
    raw = body([record()])
    packed = _packed("gzip", raw, *[b""] * MAX_GZIP_MEMBERS)
    response = post_batch(shared_server, packed, {"Content-Encoding": "gzip"})
    assert response.status_code == 413


def _raw_status(server: Server, framing: str, sent: Iterable[bytes] = ()) -> bytes:
    """POST by hand on HTTP/1.1: the head, then ``sent``, then read the status line.

    By hand because a client that sends the whole body before reading (httpx) may get a
    connection reset instead of the early 413; everything sent here is read by the server.
    """
    head = (
        f"POST {BATCH_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {server.api_key}\r\n"
        f"Content-Type: {MSGPACK}\r\n{framing}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head.encode())
        for data in sent:
            sock.sendall(data)
        return sock.makefile("rb").readline()


def test_too_large_body_is_413(shared_server: Server) -> None:
    """A body over MAX_BATCH_BYTES is refused with 413 (by Content-Length, before reading it)."""
    status = _raw_status(shared_server, f"Content-Length: {MAX_BATCH_BYTES + 1}")
    assert status.split()[1] == b"413"


def test_streamed_large_body_is_413(shared_server: Server) -> None:
    """A chunked body (no Content-Length) growing past the limit is cut off with 413."""

    def chunks() -> Iterator[bytes]:
        mib = 1024 * 1024
        for _ in range(MAX_BATCH_BYTES // mib):
            yield b"%x\r\n" % mib + b"\x00" * mib + b"\r\n"
        yield b"1\r\n\x00"  # one byte past the limit; nothing after it is left unread

    status = _raw_status(shared_server, "Transfer-Encoding: chunked", chunks())
    assert status.split()[1] == b"413"


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_decompression_bomb_is_413(shared_server: Server, encoding: str) -> None:
    """A small compressed body that inflates past MAX_BATCH_BYTES is refused with 413."""
    zeros = b"\x00" * (MAX_BATCH_BYTES + 1024)
    packed = zstandard.compress(zeros) if encoding == "zstd" else gzip.compress(zeros)
    assert len(packed) < MAX_BATCH_BYTES // 100
    response = post_batch(shared_server, packed, {"Content-Encoding": encoding})
    assert response.status_code == 413


@pytest.mark.parametrize("key", ["", "psk_unknown_key_123", "no-prefix-key"])
def test_missing_or_bad_key_is_401(shared_server: Server, key: str) -> None:
    """No key, an unknown key or a malformed key: 401 with a JSON error."""
    headers = {"Content-Type": "application/msgpack", "X-API-Key": key}
    with httpx.Client(base_url=shared_server.base_url) as client:
        response = client.post(BATCH_PATH, content=body([record()]), headers=headers)
    assert response.status_code == 401
    assert "key" in response.json()["error"]


def test_foreign_project_header_is_403(shared_server: Server) -> None:
    """X-Project-Id naming another project than the key's: 403, nothing stored."""
    rid = unique("forbidden")
    response = post_batch(shared_server, body([record(rid)]), {"X-Project-Id": "prj_other"})
    assert response.status_code == 403
    assert rid not in shared_server.stored_ids()


def test_own_project_header_is_accepted(shared_server: Server) -> None:
    """X-Project-Id naming the key's own project (by id or by name) is fine."""
    project = call(shared_server, "GET", "/api/auth/validate").json()
    for value in (project["project_id"], project["project"]):
        response = post_batch(shared_server, body([record()]), {"X-Project-Id": value})
        assert response.status_code == 200


#: Seconds the 503 test's stalled body may wait: longer than any wait for the 503.
_STALLED_BODY_TIMEOUT = 120.0


def _refused_beside(server: Server, content: bytes) -> tuple[socket.socket, httpx.Response]:
    """A batch stalled after its first byte, and the answer to batches sent beside it.

    Batches are sent until one is refused: only the stalled one can then hold the
    slot. A batch the server admits before the stalled one is stored (200); if the
    stalled one arrives while such a batch holds the slot, it is the one refused,
    and it is opened again.
    """
    conn = open_batch(server, server.api_key, len(content))
    deadline = time.monotonic() + _STALLED_BODY_TIMEOUT / 2
    while True:
        beside = post_batch(server, body([record(unique("fast"))]))
        if beside.status_code != 200 or time.monotonic() > deadline:
            return conn, beside
        if select.select([conn], [], [], 0.05)[0]:
            conn.close()
            conn = open_batch(server, server.api_key, len(content))


def test_overload_answers_503_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one batch in flight and a bound of one, a second batch gets 503 and Retry-After."""
    monkeypatch.setenv("BANYAN_SERVER_MAX_INFLIGHT", "1")
    # The stalled body must outlive the wait for a 503 on a loaded machine: no 408 meanwhile.
    monkeypatch.setenv("BANYAN_SERVER_BODY_TIMEOUT", str(_STALLED_BODY_TIMEOUT))
    srv = start_server(tmp_path)
    content = body([record("slow")])
    try:
        conn, busy = _refused_beside(srv, content)
        with conn:
            assert busy.status_code == 503
            assert busy.headers["Retry-After"] == "1"
            conn.sendall(content[1:])
            assert status_of(conn) == 200
        assert post_batch(srv, body([record("after")])).status_code == 200
        assert {"slow", "after"} <= set(srv.stored_ids())
    finally:
        srv.stop()


def test_record_repeating_its_id_key_is_rejected_not_stored(shared_server: Server) -> None:
    """A batch record whose map holds "id" twice is rejected by index; neither id is stored."""
    first, second = unique("first"), unique("second")
    fields = msgspec.to_builtins(record(first))
    repeated = bytes([0x80 + len(fields) + 1]) + msgspec.msgpack.encode(fields)[1:]
    repeated += msgspec.msgpack.encode(["id", second])[1:]
    good = msgspec.msgpack.encode(record(unique("good")))
    response = post_batch(shared_server, msgpack_array_header(2) + repeated + good)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert [r["index"] for r in response.json()["rejected"]] == [0]
    stored = shared_server.stored_ids()
    assert first not in stored
    assert second not in stored


def test_101_usage_repeating_a_key_is_400(shared_server: Server) -> None:
    """POST /api/logs/prompt-usage whose object holds a key twice: 400, nothing stored."""
    rid = unique("usage")
    content = f'{{"input": "i", "output": "o", "id": "{rid}", "id": "{rid}-2"}}'.encode()
    response = call(shared_server, "POST", "/api/logs/prompt-usage", content=content)
    assert response.status_code == 400
    assert "'id'" in response.json()["error"]
    assert rid not in shared_server.stored_ids()


def test_101_usage_that_is_a_score_is_400_and_not_stored(shared_server: Server) -> None:
    """A score body (it has a kind) sent to the 1.0.1 endpoint: 400, not an empty log row."""
    rid = unique("score")
    content = f'{{"kind": "score", "id": "{rid}", "name": "thumbs", "value": true}}'.encode()
    response = call(shared_server, "POST", "/api/logs/prompt-usage", content=content)
    assert response.status_code == 400, response.text
    assert rid not in shared_server.stored_ids()
