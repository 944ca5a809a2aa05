"""PostgreSQL down: StoreUnavailable, then recovery by itself; the password never shown."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pgserver
import pytest
from pgserver import PASSWORD, PgServer, PgUnavailable

from banyan.server.store import StoreUnavailable, redact
from banyan.server.store.postgres import PostgresStore

from .records import batch, opened, run

#: Attempts, 0.2 s apart, that a store gets to reconnect after PostgreSQL is back.
RECOVERY_ATTEMPTS = 150


async def _until_stored(store: PostgresStore) -> int:
    """Ingest one batch, retrying while the store reports StoreUnavailable; returns tries."""
    for attempt in range(1, RECOVERY_ATTEMPTS + 1):
        try:
            await store.ingest("prj_a", batch([f"after-{attempt}"]), 0)
            return attempt
        except StoreUnavailable:
            await asyncio.sleep(0.2)
    raise AssertionError("the store did not reconnect")


def test_outage_raises_store_unavailable_then_recovers(
    own_pg: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL stopped: ingest raises StoreUnavailable; restarted: it works again, unaided."""
    caplog.set_level(logging.DEBUG)
    url = own_pg.create_database("outage")
    errors: list[StoreUnavailable] = []

    async def scenario() -> dict[str, int]:
        store = await opened(url, timeout=1.0)
        try:
            await store.ingest("prj_a", batch(["before"]), 0)
            own_pg.stop()
            with pytest.raises(StoreUnavailable) as caught:
                await store.ingest("prj_a", batch(["during"]), 0)
            errors.append(caught.value)
            own_pg.start()
            await _until_stored(store)
            return await store.summary("prj_a")
        finally:
            await store.close()

    summary = run(scenario())
    assert summary["stored"] == 2
    assert errors[0].retry_after > 0
    shown = [str(errors[0]), repr(errors[0]), *(r.getMessage() for r in caplog.records)]
    assert not [text for text in shown if PASSWORD in text]


def test_open_without_postgresql_raises_store_unavailable(own_pg: PgServer) -> None:
    """Opening a store while PostgreSQL is down raises StoreUnavailable, password not in it."""
    url = own_pg.url()
    own_pg.stop()
    with pytest.raises(StoreUnavailable) as caught:
        run(opened(url, timeout=1.0))
    assert PASSWORD not in str(caught.value)


def test_repr_hides_the_password(pg_url: str) -> None:
    """repr(store) names the database but not its password."""

    async def scenario() -> str:
        store = await opened(pg_url)
        await store.close()
        return repr(store)

    shown = run(scenario())
    assert PASSWORD not in shown
    assert "***" in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgres://u@h/db?password=x&sslmode=require",
            "postgres://u@h/db?password=***&sslmode=require",
        ),
        ("host=h user=u password='a b' dbname=d", "host=h user=u password=*** dbname=d"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_redact_replaces_every_password_form(url: str, shown: str) -> None:
    """redact() hides a password in a URL, in its query, and in key=value form."""
    assert redact(url) == shown


def test_import_banyan_loads_no_database_driver() -> None:
    """import banyan, banyan.server and banyan.server.store load neither psycopg nor its pool."""
    code = (
        "import sys, banyan, banyan.server, banyan.server.store; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _no_postgres() -> PgServer:
    raise PgUnavailable("initdb not found")


def test_fixture_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PostgreSQL the fixture skips, but under CI (CI set) it fails the test."""
    monkeypatch.setattr(pgserver, "_started", _no_postgres)
    outcomes = []
    for ci in ("", "true"):
        monkeypatch.setenv("CI", ci)
        # Both caught: a skip raised here must be seen, not end this test as skipped.
        with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)) as caught:
            pgserver.start_or_skip()
        outcomes.append(caught.type)
    assert outcomes == [pytest.skip.Exception, pytest.fail.Exception]
