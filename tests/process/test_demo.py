"""`banyan demo`, the README's first command, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from serverproc import start_server

from banyan import _demo
from banyan._cli import main
from banyan.server.web import experiment_path


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


def _run_demo(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``banyan demo ARGS`` with its default directory under ``data`` (not the user's)."""
    argv = [sys.executable, "-m", "banyan", "demo", "--workers", "1", *args]
    env = {**os.environ, "XDG_DATA_HOME": str(data)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=110, check=False, env=env)


def test_demo_ends_with_a_link_that_opens_after_it(tmp_path: Path) -> None:
    """Without --keep the demo keeps its data in $XDG_DATA_HOME/banyan/demo, replaced by the
    next demo, and ends with the serve command and a results-page link that opens on it."""
    data = tmp_path / "data"
    kept = data / "banyan" / "demo" / "demo.db"
    assert _run_demo(data, "--records", "100").returncode == 0
    result = _run_demo(data, "--records", "300")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"banyan serve --db {kept} --api-key {_demo.DEMO_KEY}" in result.stdout
    link = result.stdout.split("results page (valid 15 minutes")[1].splitlines()[1].strip()
    server = start_server(tmp_path, db=kept, api_key=_demo.DEMO_KEY)
    try:
        assert server.summary()["stored"] == 300
        with httpx.Client() as browser:
            assert browser.get(link.replace(_demo.KEPT_URL, server.base_url)).status_code == 200
            query = parse_qs(urlsplit(link).query)
            path = experiment_path(query["project"][0], query["experiment"][0])
            page = browser.get(f"{server.base_url}{path}")
            assert (page.status_code, "precise-vs-friendly" in page.text) == (200, True)
    finally:
        server.stop()


def test_demo_without_keeping_leaves_nothing(tmp_path: Path) -> None:
    """--no-keep: the data is removed at the end, and the demo says there is no page."""
    result = _run_demo(tmp_path, "--records", "100", "--no-keep")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "results page: none" in result.stdout
    assert list(tmp_path.iterdir()) == []


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


def test_demo_json_prints_one_object_on_stdout(tmp_path: Path) -> None:
    """--json: stdout is the outcome as JSON (counts, ok, variants, where it kept the data and
    the page's link); the story is on stderr."""
    result = _run_demo(tmp_path, "--records", "300", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["kept"] == str(tmp_path / "banyan" / "demo")
    assert outcome["link"].startswith(f"{_demo.KEPT_URL}/ui/open?")
    assert {k: outcome[k] for k in ("sent", "stored", "duplicated", "ok")} == {
        "sent": 300, "stored": 300, "duplicated": 0, "ok": True}  # fmt: skip
    assert sorted(v["version"] for v in outcome["variants"]) == ["1", "2"]
    assert "reference server" in result.stderr
