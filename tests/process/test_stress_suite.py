"""The quick stress run (``python -m stress.run --quick``) as part of ``make test`` (issue #7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: A hang guard, not a performance claim: the quick run takes about 80 s on 2 cores, and
#: about four times that on one shared core (taskset -c 0 beside a CPU hog, issue 21).
LIMIT_S = 900
#: Lines of output quoted per failed scenario (or of the whole run).
TAIL = 60


def scenario_names() -> list[str]:
    """The scenarios of stress/run.py's quick run, in its order."""
    cmd = [sys.executable, "-m", "stress.run", "--list", "--quick"]
    listed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return listed.stdout.split()


def clean_env(tmp: Path) -> dict[str, str]:
    """Our environment without the caller's ``BANYAN_*`` settings; spool and cache in ``tmp``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BANYAN_")}
    env.update(BANYAN_SPOOL_DIR=str(tmp / "spool"), BANYAN_CACHE_DIR=str(tmp / "cache"))
    return {**env, "PYTHONUNBUFFERED": "1"}


def run_quick(tmp: Path) -> tuple[int, str]:
    """Run the quick suite; (exit status, its output). Stopped by SIGTERM past ``LIMIT_S``.

    On SIGTERM stress.run has the running scenario print its stacks, then kills its session.
    """
    cmd = [sys.executable, "-m", "stress.run", "--quick", "--json", str(tmp / "rows.json")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(tmp), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        out = proc.communicate(timeout=LIMIT_S)[0]
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out = proc.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
        return 124, f"{out}\n(stress.run --quick still running after {LIMIT_S} s: stopped)"
    return proc.returncode, out


def sections(out: str) -> dict[str, list[str]]:
    """Each scenario's output by name (stress.run prints ``== NAME`` before each)."""
    found: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in out.splitlines():
        if line.startswith("== "):
            lines = found.setdefault(line[3:].strip(), [])
        lines.append(line)
    return found


def table_rows(out: str) -> dict[str, list[str]]:
    """The cells of the final table's rows, by scenario."""
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows[2:]}


def problem(cells: list[str] | None, row: dict[str, Any] | None) -> str | None:
    """What is wrong with one scenario's table row and JSON row; None when it passed."""
    if cells is None or row is None:
        return "no row in the table"
    if row.get("skipped"):
        # As in stress.run: a scenario whose dependency is missing (no redis-server) says so.
        return None if cells[6] == "skip" else f"skipped but reported {cells[6]!r}"
    if cells[6] != "ok" or not row["ok"] or row["exit"]:
        return f"result {cells[6]!r}, exit {row['exit']}, notes {row.get('notes')!r}"
    if row["unaccounted"] or row["duplicated"]:
        return f"{row['unaccounted']} unaccounted, {row['duplicated']} duplicated"
    return None


@pytest.mark.slow
@pytest.mark.timeout(LIMIT_S + 60)
def test_quick_stress_run_accounts_for_every_record_of_every_scenario(tmp_path: Path) -> None:
    """stress.run --quick exits 0 with an ok row per scenario: 0 unaccounted, 0 duplicated."""
    names = scenario_names()
    code, out = run_quick(tmp_path)
    written = tmp_path / "rows.json"
    rows = {r["scenario"]: r for r in json.loads(written.read_text())} if written.exists() else {}
    table, by_name = table_rows(out), sections(out)
    problems = {name: problem(table.get(name), rows.get(name)) for name in names}
    failed = {name: why for name, why in problems.items() if why}
    report = [f"== {name}: {why}\n" + "\n".join(by_name.get(name, [])[-TAIL:])
              for name, why in failed.items()]  # fmt: skip
    report.append("-- last lines of stress.run --quick:\n" + "\n".join(out.splitlines()[-TAIL:]))
    message = f"exit {code}; failed: {failed}\n" + "\n".join(report)
    assert not failed, message
    assert code == 0, message
    assert list(table) == names, out
    # Issue 6's outage checks the process's memory too, not only the ring's byte count.
    assert "rss_growth_bytes" in rows["outage"], rows["outage"]
