"""`banyan demo`, the README's first command, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serverproc import start_server

from banyan import _demo
from banyan._cli import main


def test_demo_delivers_every_record_and_reports_the_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo exits 0 with sent = stored + dropped, 0 duplicates and both variants; into a
    file it writes no progress frames; --keep leaves a database that the printed commands
    serve and read back, and the printed results-page link opens on that server."""
    keep = tmp_path / "kept"
    result = subprocess.run(
        [sys.executable, "-m", "banyan", "demo", "--workers", "2", "--records", "2000",
         "--keep", str(keep)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "every record accounted for: 2,000 sent = 2,000 stored + 0 dropped + 0 spooled" in out
    assert "duplicated           0" in out
    results = out.split("experiment results (per variant)")[1]
    assert "\n  v1 " in results, results
    assert "\n  v2 " in results, results
    assert "\r" not in out
    assert f"banyan serve --db {keep / 'demo.db'} --api-key {_demo.DEMO_KEY}" in out
    assert "banyan logs list" in out
    assert "sample ratio check" in out
    link = out.split("results page (valid 15 minutes")[1].splitlines()[1].strip()
    assert link.startswith(f"{_demo.KEPT_URL}/ui/open?"), out
    server = start_server(tmp_path, db=keep / "demo.db", api_key=_demo.DEMO_KEY)
    try:
        with httpx.Client() as browser:
            opened = browser.get(link.replace(_demo.KEPT_URL, server.base_url))
            assert opened.status_code == 200
            assert "banyan_session=" in opened.headers["set-cookie"]
        argv = ["logs", "export", "--base-url", server.base_url, "--api-key", _demo.DEMO_KEY]
        assert main(argv) == 0
    finally:
        server.stop()
    assert len(capsys.readouterr().out.splitlines()) == 2000


def test_demo_refuses_to_overwrite_a_kept_database(tmp_path: Path) -> None:
    """--keep DIR where DIR/demo.db exists: exit with a message, the file untouched."""
    (tmp_path / "demo.db").write_bytes(b"mine")
    result = subprocess.run(
        [sys.executable, "-m", "banyan", "demo", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "exists" in result.stderr
    assert (tmp_path / "demo.db").read_bytes() == b"mine"


def _api(stored: int) -> httpx.Client:
    """A stand-in for the demo server's summary and results endpoints."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/summary"):
            return httpx.Response(200, json={"stored": stored, "duplicates": 0})
        return httpx.Response(200, json={"variants": []})

    return httpx.Client(base_url="http://demo.invalid", transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    ("account", "stored", "status"),
    [
        ({"calls": 100, "dropped": 0, "spooled": 0, "failed": 0}, 100, 0),
        ({"calls": 100, "dropped": 10, "spooled": 5, "failed": 0}, 85, 0),
        ({"calls": 100, "dropped": 0, "spooled": 0, "failed": 0}, 90, 1),  # 10 unaccounted
        ({"calls": 0, "dropped": 0, "spooled": 0, "failed": 2}, 0, 1),  # every worker died
        ({"calls": 0, "dropped": 0, "spooled": 0, "failed": 0}, 0, 1),  # nothing was logged
    ],
)
def test_demo_verdict_fails_on_crashed_workers_and_unaccounted_records(
    account: dict[str, int], stored: int, status: int
) -> None:
    """ok only when sent = stored + dropped + spooled and every worker reported."""
    with _api(stored) as api:
        assert _demo._report(api, "exp", account, 1.0)["ok"] is (status == 0)


def test_demo_json_prints_one_object_on_stdout() -> None:
    """--json: stdout is the outcome as JSON (counts, ok, variants); the story is on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "banyan", "demo", "--workers", "1", "--records", "300", "--json"],
        capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert {k: outcome[k] for k in ("sent", "stored", "duplicated", "ok")} == {
        "sent": 300, "stored": 300, "duplicated": 0, "ok": True}  # fmt: skip
    assert sorted(v["version"] for v in outcome["variants"]) == ["1", "2"]
    assert "reference server" in result.stderr
