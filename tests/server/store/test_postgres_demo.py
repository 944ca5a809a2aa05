"""``banyan demo --db postgresql://...``: the demo's workload and accounting on PostgreSQL (#17)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pgserver import PASSWORD

from . import pgfleet


@pytest.mark.slow
def test_demo_on_postgresql_accounts_for_every_record_and_hides_the_password(
    pg_url: str, tmp_path: Path
) -> None:
    """The demo on an empty PostgreSQL database exits 0 with the SQLite demo's accounting
    (experiment results as far as the engine serves them), leaves no file where it ran,
    its records are in that database once each, and the URL's password is never printed."""
    argv = [sys.executable, "-m", "banyan", "demo", "--db", pg_url, "--workers", "2",
            "--records", "2000"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=110, check=False,
                            cwd=tmp_path)  # fmt: skip
    out = result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []
    assert result.returncode == 0, out
    assert "every record accounted for: 2,000 sent = 2,000 stored + 0 dropped + 0 spooled" in out
    assert "duplicated           0" in out
    assert "PostgreSQL at" in out
    assert PASSWORD not in out
    (ids,) = pgfleet.ids_at(pg_url).values()
    assert len(ids) == 2000
    assert set(ids.values()) == {1}


def test_demo_on_a_database_that_is_not_empty_says_so(pg_url: str) -> None:
    """A second demo on the same database stops with a message naming the cause, not a
    traceback, and exits non-zero."""
    argv = [sys.executable, "-m", "banyan", "demo", "--db", pg_url, "--workers", "1",
            "--records", "10"]  # fmt: skip
    first = subprocess.run(argv, capture_output=True, text=True, timeout=110, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    again = subprocess.run(argv, capture_output=True, text=True, timeout=110, check=False)
    assert again.returncode != 0
    assert "not empty" in again.stderr
    assert "Traceback" not in again.stderr
