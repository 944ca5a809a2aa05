"""``banyan demo --db postgresql://...``: the demo's workload and accounting on PostgreSQL (#17)."""

from __future__ import annotations

import os
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
    cwd, kept = tmp_path / "cwd", tmp_path / "data" / "banyan" / "demo"
    cwd.mkdir()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=110, check=False,
                            cwd=cwd, env=env)  # fmt: skip
    out = result.stdout + result.stderr
    assert list(cwd.iterdir()) == []
    assert result.returncode == 0, out
    assert "every record accounted for: 2,000 sent = 2,000 stored + 0 dropped + 0 spooled" in out
    assert "duplicated           0" in out
    assert "PostgreSQL at" in out
    assert PASSWORD not in out
    # The pages' secret is kept, so the printed link verifies on the printed server.
    assert f"BANYAN_SECRET_DIR={kept} banyan serve" in out
    assert "/ui/open?" in out.split("results page (valid 15 minutes")[1]
    assert (kept / "banyan.secret").exists()
    (ids,) = pgfleet.ids_at(pg_url).values()
    assert len(ids) == 2000
    assert set(ids.values()) == {1}


def test_demo_on_a_database_that_is_not_empty_says_so(pg_url: str, tmp_path: Path) -> None:
    """A second demo on the same database stops with a message naming the cause, not a
    traceback, and exits non-zero."""
    argv = [sys.executable, "-m", "banyan", "demo", "--db", pg_url, "--workers", "1",
            "--records", "10"]  # fmt: skip
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    first = subprocess.run(argv, capture_output=True, text=True, timeout=110, check=False,
                           env=env)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    again = subprocess.run(argv, capture_output=True, text=True, timeout=110, check=False,
                           env=env)  # fmt: skip
    assert again.returncode != 0
    assert "not empty" in again.stderr
    assert "Traceback" not in again.stderr
