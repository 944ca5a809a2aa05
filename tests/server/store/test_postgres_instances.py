"""Three ``banyan serve`` instances on one PostgreSQL database (issue #17, items 2 and 6).

Counts are read at the database: every record stored once by id, none lost,
and each project's counters equal to its rows, while instances are killed,
restarted and sent the same batch at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from banyan._localserver import LocalServer

from ..helpers import body, post_batch, record
from . import pgfleet


@pytest.fixture
def fleet(pg_url: str, tmp_path: Path) -> Iterator[list[LocalServer]]:
    """Three instances of ``banyan serve --db <new database>``, stopped at the end."""
    servers = pgfleet.start_instances(tmp_path, pg_url, 3)
    try:
        yield servers
    finally:
        pgfleet.stop_all(servers)


def _second_project(server: LocalServer) -> str:
    response = server.post("/api/v2/projects", json={"name": "second"})
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])


def _post_at_once(servers: list[LocalServer], content: bytes) -> list[httpx.Response]:
    barrier, answers = threading.Barrier(len(servers)), dict[int, httpx.Response]()

    def send(n: int) -> None:
        barrier.wait(30)
        answers[n] = post_batch(servers[n], content)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return [answers[n] for n in sorted(answers)]


@pytest.mark.slow
def test_one_batch_sent_to_three_instances_at_once_is_stored_once(
    fleet: list[LocalServer], pg_url: str
) -> None:
    """The same batch at three instances at once: stored once, the rest answered duplicates."""
    records = [record(f"same-{n}") for n in range(500)]
    answers = _post_at_once(fleet, body(records))
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    results = [a.json() for a in answers]
    assert sum(r["accepted"] for r in results) == 500, results
    assert sum(r["duplicates"] for r in results) == 1000, results
    (ids,) = pgfleet.ids_at(pg_url).values()
    assert sorted(ids) == sorted(r.id for r in records)
    assert set(ids.values()) == {1}
    assert fleet[2].summary()["stored"] == 500


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_clients_spread_over_three_instances_one_killed_lose_and_duplicate_nothing(
    fleet: list[LocalServer], pg_url: str, tmp_path: Path
) -> None:
    """Six clients, two projects, instance 0 SIGKILLed mid-load and restarted, its batches
    retried at instance 1: every record stored once by id, none lost, counters exact."""
    keys = [fleet[0].api_key, _second_project(fleet[1])]
    load = pgfleet.spread_load(fleet, keys, tmp_path, clients=6, records=2000)
    assert load.drained, "a client's spool did not empty"
    assert sum(load.dropped.values()) == 0, load.dropped
    inputs = pgfleet.inputs_at(pg_url)
    sent = {f"{name} {i}" for name, count in load.sent.items() for i in range(count)}
    assert sum(load.sent.values()) == 12_000
    assert sent - set(inputs) == set(), "records lost"
    assert {k: n for k, n in inputs.items() if n > 1} == {}, "records stored twice"
    assert set(inputs) == sent
    ids, counters = pgfleet.ids_at(pg_url), pgfleet.counters_at(pg_url)
    assert len(ids) == 2
    for project, per_id in ids.items():
        assert set(per_id.values()) == {1}
        assert counters[project]["stored"] == len(per_id) == 6_000
        # A client of each project lost an answer of instance 0: its retry found the rows.
        assert counters[project]["duplicates"] > 0
    for server in fleet:
        assert server.summary()["stored"] == 6_000
