"""GET /api/v2/logs: stored records read back in pages, filtered, scoped to the key's project."""

from __future__ import annotations

from typing import Any

import pytest
from serverproc import Server

from .helpers import body, call, post_batch, record, unique


def _store(
    server: Server, key: str | None = None, start: float = 1000.0, **fields: Any
) -> list[str]:
    """Store 5 records with ``fields`` (ts start .. start + 4); returns their ids in order."""
    records = [record(ts=start + n, **fields) for n in range(5)]
    response = post_batch(server, body(records), key=key)
    assert response.json()["accepted"] == 5, response.text
    return [r.id for r in records]


def _all(server: Server, key: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every page of GET /api/v2/logs for ``params``, following ``next``."""
    logs: list[dict[str, Any]] = []
    while True:
        response = call(server, "GET", "/api/v2/logs", key, params=params)
        assert response.status_code == 200, response.text
        data = response.json()
        logs += data["logs"]
        if data["next"] is None:
            return logs
        params = {**params, "cursor": data["next"]}


def test_pages_follow_the_cursor_in_stored_order(server: Server) -> None:
    """limit=2 over 5 records: pages of 2, 2, 1, every record once, oldest first, whole."""
    ids = _store(server, prompt_name="p", model="m", metadata={"k": [1, 2]})
    first = call(server, "GET", "/api/v2/logs", params={"limit": 2}).json()
    assert [r["id"] for r in first["logs"]] == ids[:2]
    assert first["next"] is not None
    logs = _all(server, limit=2)
    assert [r["id"] for r in logs] == ids
    assert logs[0] == {"id": ids[0], "ts": 1000.0, "input": "in", "output": "out",
                       "prompt_name": "p", "model": "m", "metadata": {"k": [1, 2]}}  # fmt: skip


def test_newest_first(server: Server) -> None:
    """order=desc pages from the newest record back."""
    ids = _store(server)
    assert [r["id"] for r in _all(server, limit=2, order="desc")] == ids[::-1]


def test_filters(server: Server) -> None:
    """prompt, experiment, variant and a [since, until) time range select records.

    b's records come after a's in time too: PostgreSQL pages by (ts, id).
    """
    a = _store(server, prompt_name="a", experiment_id="exp_1", experiment_version_id="var_1")
    b = _store(server, start=1010.0, prompt_name="b", experiment_id="exp_1",
               experiment_version_id="var_2")  # fmt: skip
    assert [r["id"] for r in _all(server, prompt="a")] == a
    assert [r["id"] for r in _all(server, experiment="exp_1", limit=3)] == a + b
    assert [r["id"] for r in _all(server, variant="var_2")] == b
    assert [r["id"] for r in _all(server, since=1001, until=1013)] == a[1:] + b[:3]
    assert _all(server, prompt="c") == []


def test_another_projects_records_are_not_listed(shared_server: Server, project_b: str) -> None:
    """A key sees its own project's records only."""
    name = unique("scoped")
    ids = _store(shared_server, key=project_b, prompt_name=name)
    assert [r["id"] for r in _all(shared_server, key=project_b, prompt=name)] == ids
    assert _all(shared_server, prompt=name) == []


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 10_001}, {"limit": "x"}, {"cursor": "abc"}, {"since": "nan"},
     {"until": "soon"}, {"order": "up"}],
)  # fmt: skip
def test_bad_parameters_are_400(shared_server: Server, params: dict[str, Any]) -> None:
    """A limit out of 1..10,000, a cursor or time that is no number, an unknown order."""
    response = call(shared_server, "GET", "/api/v2/logs", params=params)
    assert response.status_code == 400, response.text
    assert "error" in response.json()
