"""``banyan serve --db-pool-size N`` or $BANYAN_DB_POOL_SIZE: a worker's PostgreSQL connections."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pgserver import PgServer
from serverproc import start_server

from ..helpers import body, post_batch, record
from .records import scalar

#: Backends of the database but the one asking.
_OTHERS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.mark.parametrize("how", ["option", "environment"])
def test_pool_size_caps_a_workers_connections(tmp_path: Path, pg: PgServer, how: str) -> None:
    """Under 12 concurrent batches a worker with a pool of 2 holds exactly 2 connections."""
    url = pg.create_database(f"pool_{how}")
    given = ["--db-pool-size", "2"] if how == "option" else []
    env = {"BANYAN_DB_POOL_SIZE": "2"} if how == "environment" else {}
    limits = ["--max-inflight", "16", "--max-inflight-per-project", "16"]
    srv = start_server(tmp_path, *given, *limits, db=url, env=env)
    try:
        batches = [body([record() for _ in range(500)]) for _ in range(12)]
        with ThreadPoolExecutor(12) as pool:
            codes = [r.status_code for r in pool.map(lambda b: post_batch(srv, b), batches)]
        held = scalar(url, _OTHERS)
    finally:
        srv.stop()
    assert codes == [200] * 12
    assert held == 2


def test_a_bad_pool_size_in_the_environment_stops_serve(tmp_path: Path, pg: PgServer) -> None:
    """$BANYAN_DB_POOL_SIZE that is not a positive integer: serve exits, naming the variable."""
    url = pg.create_database("pool_bad")
    try:
        start_server(tmp_path, db=url, env={"BANYAN_DB_POOL_SIZE": "0"}).stop()
    except RuntimeError as exc:
        message = str(exc)
    else:
        message = "serve started"
    assert "BANYAN_DB_POOL_SIZE" in message
