"""Token usage and score records through the batch endpoint and the SQLite schema (#18)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from serverproc import Server

from banyan._record import Score, UsageRecord
from banyan._wire import MSGPACK
from banyan.server import _db, _ingest, _logs, _rules

from .helpers import (
    body,
    call,
    create_prompt,
    post_batch,
    record,
    schema_4_database,
    unique,
    upgraded,
)


def _score(value: Any, **fields: Any) -> Score:
    base = {"id": unique("score"), "ts": 1.0, "name": "accepted", "value": value,
            "experiment_id": "e", "experiment_version_id": "v", "sticky_value": "u"}  # fmt: skip
    return Score(**{**base, **fields})


def test_schema_4_database_gains_usage_columns_and_scores(tmp_path: Path) -> None:
    """A schema 4 database is upgraded in place: logs keep their rows, scores appear."""
    with upgraded(tmp_path / "v4.db", schema_4_database) as conn:
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


def test_results_show_usage_cost_and_every_score_against_control(shared_server: Server) -> None:
    """The results JSON has tokens, cost and each score per variant, with differences."""
    prompt = unique("outcomes")
    create_prompt(shared_server, prompt, "one", "two")
    variants = [{"version": "1", "percentage": 50}, {"version": "2", "percentage": 50}]
    exp = call(shared_server, "POST", "/api/v2/experiments",
               json={"prompt": prompt, "variants": variants}).json()  # fmt: skip
    ids = [v["id"] for v in exp["variants"]]
    items: list[Any] = []
    for i in range(40):
        variant, user = ids[i % 2], f"user-{i}"
        rid = unique("rec")
        where = {"experiment_id": exp["id"], "experiment_version_id": variant, "sticky_value": user}
        items.append(UsageRecord(**{**msgspec.structs.asdict(record(rid, **where)),
                                    "input_tokens": 100 + i % 2 * 50, "output_tokens": 10,
                                    "cost": 0.01 * (1 + i % 2) + 0.0001 * (i % 7)}))  # fmt: skip
        items.append(_score(i % 4 == 1, **where))
        by_record = {"experiment_id": None, "experiment_version_id": None, "sticky_value": None}
        items.append(_score("good" if i % 3 else "bad", name="verdict", record_id=rid, **by_record))
    assert post_batch(shared_server, body(items)).json()["accepted"] == 120
    found = call(shared_server, "GET", f"/api/v2/experiments/{exp['id']}/results").json()
    control, treatment = found["variants"]
    assert set(control["metrics"]) >= {"latency_ms", "input_tokens", "output_tokens", "cost_usd",
                                       "score:accepted", "score:verdict=good"}  # fmt: skip
    assert control["metrics"]["input_tokens"]["value"] == 100.0
    assert treatment["metrics"]["input_tokens"]["value"] == 150.0
    assert treatment["metrics"]["score:accepted"] == {**treatment["metrics"]["score:accepted"],
        "kind": "proportion", "subjects": 20, "value": 0.5}  # fmt: skip
    assert control["metrics"]["score:accepted"]["value"] == 0.0
    assert treatment["metrics"]["score:verdict=good"]["subjects"] == 20
    difference = treatment["versus_control"]["cost_usd"]
    assert difference["absolute"] == pytest.approx(0.01, abs=1e-3)
    assert difference["significant"] is True


def test_a_row_sqlite_refuses_leaves_the_batch_scores_stored(tmp_path: Path) -> None:
    """On the row-by-row path a refused score is rejected by index; records and scores stay."""
    items: list[Any] = [record("ok-1"), _score(True, id="s-ok"), _score(False, id="s-bad")]
    batch = _ingest.decode(body(items), MSGPACK)
    batch.scores[_rules.SCORE_COLUMNS + 1] = 2**70  # ts of the second score: too big for SQLite
    db = _db.Database(tmp_path / "t.db")
    try:
        inserted = asyncio.run(db.write(_logs.store, "prj_t", batch, 0))
    finally:
        db.close()
    assert (inserted, batch.count) == (2, 2)
    assert [(r.index, "cannot store" in r.error) for r in batch.rejected] == [(2, True)]
    assert batch.score_indexes == [1]
