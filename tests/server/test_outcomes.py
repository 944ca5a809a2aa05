"""Token usage and score records through the batch endpoint and the SQLite schema (#18)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import msgspec
from serverproc import Server

from banyan._record import Score, UsageRecord
from banyan.server import _db

from .helpers import body, call, post_batch, record, schema_4_database, unique


def _score(value: Any, **fields: Any) -> Score:
    base = {"id": unique("score"), "ts": 1.0, "name": "accepted", "value": value,
            "experiment_id": "e", "experiment_version_id": "v", "sticky_value": "u"}  # fmt: skip
    return Score(**{**base, **fields})


def test_schema_4_database_gains_usage_columns_and_scores(tmp_path: Path) -> None:
    """A schema 4 database is upgraded in place: logs keep their rows, scores appear."""
    path = tmp_path / "v4.db"
    with schema_4_database(path) as conn:
        conn.execute("INSERT INTO logs (project_id, id, ts, record) VALUES ('p', 'r', 0, x'')")
    _db.Database(path).close()
    with contextlib.closing(_db.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION
        rows = conn.execute("SELECT id, input_tokens, output_tokens, cost FROM logs").fetchall()
        assert rows == [("r", None, None, None)]
        assert conn.execute("SELECT count(*) FROM scores").fetchone() == (0,)


def test_usage_and_scores_are_stored_and_scores_deduplicated_by_id(shared_server: Server) -> None:
    """Usage lands in its columns; a resent score counts as a duplicate, a bad one by index."""
    rid = unique("rec")
    used = UsageRecord(**{**msgspec.structs.asdict(record(rid)), "input_tokens": 7, "cost": 0.5})
    first, again = _score(True, record_id=rid), None
    again = msgspec.structs.replace(first)
    bad = {**msgspec.to_builtins(_score(1.0)), "value": None}
    answer = post_batch(shared_server, body([used, first, again, bad])).json()
    assert (answer["accepted"], answer["duplicates"]) == (2, 1)
    assert [r["index"] for r in answer["rejected"]] == [3]
    with contextlib.closing(_db.connect(shared_server.db)) as conn:
        row = conn.execute(
            "SELECT input_tokens, output_tokens, cost FROM logs WHERE id = ?", (rid,)
        )
        assert row.fetchone() == (7, None, 0.5)
        stored = conn.execute(
            "SELECT kind, value, record_id, subject, record FROM scores WHERE id = ?", (first.id,)
        ).fetchone()
    assert stored[:4] == ("boolean", 1.0, rid, "u")
    assert msgspec.msgpack.decode(stored[4], type=Score) == first
    resent = post_batch(shared_server, body([first])).json()
    assert (resent["accepted"], resent["duplicates"]) == (0, 1)


def test_a_score_is_not_a_log(shared_server: Server) -> None:
    """A stored score is not listed among the project's log ids."""
    score = _score(2.5, name="rating")
    assert post_batch(shared_server, body([score])).json()["accepted"] == 1
    assert score.id not in call(shared_server, "GET", "/api/v2/logs/ids").json()["ids"]
