"""A record id already stored is a duplicate whatever its ts, on every engine (protocol §3)."""

from __future__ import annotations

import time

from serverproc import Server

from banyan._wire import SINGLE_LOG_PATH

from .helpers import body, call, post_batch, record, unique


def test_retried_101_record_without_ts_is_a_duplicate(shared_server: Server) -> None:
    """1.0.1's single record with an id and no ts, sent twice: stored once, then a duplicate."""
    rid = unique("v1-retry")
    usage = {"id": rid, "input": "in", "output": "out"}
    first = call(shared_server, "POST", SINGLE_LOG_PATH, json=usage)
    time.sleep(0.01)  # the server stamps each arrival with its own clock
    again = call(shared_server, "POST", SINGLE_LOG_PATH, json=usage)
    assert (first.status_code, again.status_code) == (201, 201)
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    assert shared_server.stored_ids().count(rid) == 1


def test_reused_record_id_with_another_ts_is_a_duplicate(shared_server: Server) -> None:
    """A batch reusing a stored record id at another time: answered as a duplicate, not stored."""
    rid = unique("reused")
    first = post_batch(shared_server, body([record(rid, ts=time.time())]))
    again = post_batch(shared_server, body([record(rid, ts=time.time() + 60)]))
    assert (first.json()["accepted"], first.json()["duplicates"]) == (1, 0)
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1)
    assert shared_server.stored_ids().count(rid) == 1
