"""Retention: ``banyan logs prune`` and ``banyan serve --retention-days``, on each engine."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import time
from pathlib import Path

import pytest
from pgserver import PASSWORD
from serverproc import Server, start_server

from banyan._cli import main

from .helpers import body, post_batch, record

DAY = 86400.0


def _store(server: Server, *ages_in_days: float) -> list[str]:
    """Store one record per age (days before now); their ids, in that order."""
    now = time.time()
    records = [record(ts=now - age * DAY) for age in ages_in_days]
    assert post_batch(server, body(records)).status_code == 200
    return [r.id for r in records]


def _iso(days_ago: float) -> str:
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days_ago)
    return moment.date().isoformat()


def test_logs_prune_before_removes_older_records_and_prints_counts(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """logs prune --before DATE drops older records, keeps newer ones and prints the counts."""
    old, new = _store(server, 40, 1)
    code = main(["logs", "prune", "--before", _iso(10), "--db", server.database, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["removed"] == {"logs": 1, "scores": 0}
    assert server.stored_ids() == [new]
    assert old not in out


def test_logs_prune_older_than_days_reports_in_words(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """--older-than-days N is --before (now - N days); the text output names counts and cut-off."""
    _, new = _store(server, 40, 1)
    code = main(["logs", "prune", "--older-than-days", "30", "--db", server.database])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "removed 1 log and 0 scores" in out
    assert server.stored_ids() == [new]


def test_logs_prune_refuses_a_future_date_and_hides_the_password(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cut-off in the future is a usage error and prunes nothing; no password is printed."""
    ids = _store(server, 1)
    code = main(["logs", "prune", "--before", _iso(-2), "--db", server.database])
    out, err = capsys.readouterr()
    assert code == 2
    assert "future" in err
    assert server.stored_ids() == ids
    code = main(["logs", "prune", "--older-than-days", "1", "--db", server.database])
    out, err = capsys.readouterr()
    assert code == 0
    assert PASSWORD not in out + err


def test_serve_retention_days_prunes_old_records_of_a_running_server(
    server: Server, tmp_path: Path
) -> None:
    """serve --retention-days N prunes records older than N days once it has started."""
    old, new = _store(server, 40, 1)
    server.stop()
    srv = start_server(tmp_path, "--retention-days", "30", "--log-level", "info",
                       db=server.database)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while old in srv.stored_ids() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert srv.stored_ids() == [new]
        assert "retention" in srv.log.read_text()
    finally:
        srv.stop()


def _children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` and their command lines, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_text()
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_one_pruning_process_per_server_which_ends_when_serve_is_killed(tmp_path: Path) -> None:
    """--retention-days with two workers runs one pruning process; it exits once serve is gone."""
    srv = start_server(tmp_path, "--retention-days", "30", "--workers", "2")
    children = _children(srv.process.pid)
    pruners = [pid for pid, cmd in children.items() if "multiprocessing.spawn" in cmd]
    assert len(pruners) == 1
    srv.stop(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(pruners[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(pruners[0])
    for pid in children:  # granian's workers, left behind by the SIGKILL
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not alive


def test_logs_prune_does_not_create_a_missing_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --db path with no database is an error, and no file is created there."""
    missing = tmp_path / "typo.db"
    code = main(["logs", "prune", "--older-than-days", "30", "--db", str(missing)])
    assert code == 2
    assert str(missing) in capsys.readouterr().err
    assert not missing.exists()
