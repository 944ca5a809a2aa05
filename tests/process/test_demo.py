"""`banyan demo`, the README's first command, run as a real process."""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import time
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


#: Seconds a demo of a few hundred records may take on a loaded machine.
DEMO_TIMEOUT = 110


def _demo_command(data: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment of ``banyan demo ARGS`` with its directory under ``data``."""
    argv = [sys.executable, "-m", "banyan", "demo", "--workers", "1", *args]
    return argv, {**os.environ, "XDG_DATA_HOME": str(data)}


def _run_demo(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``banyan demo ARGS`` with its default directory under ``data`` (not the user's)."""
    argv, env = _demo_command(data, *args)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=DEMO_TIMEOUT, check=False, env=env
    )


def _terminal_output(master: int, until: float) -> str:
    """What was written to the pseudo-terminal ``master`` until its last writer closed it."""
    out = bytearray()
    while time.monotonic() < until:
        if not select.select([master], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        out += chunk
    return out.decode()


def _on_terminal(argv: list[str], env: dict[str, str], errors: Path) -> tuple[int, str]:
    """Run ``argv`` with stdout on a pseudo-terminal: its exit status and what it wrote there."""
    master, slave = os.openpty()
    with errors.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=err, env=env)
    os.close(slave)
    try:
        out = _terminal_output(master, time.monotonic() + DEMO_TIMEOUT)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(timeout=30), out


def _last_frame(out: str) -> tuple[str, list[str]]:
    """The bar and the first words after it of the last \\r progress frame in ``out``."""
    frames = out.split("\r  [")[1:]
    assert frames, out
    bar, counts = frames[-1].split("]", 1)
    return bar, counts.split()[:4]


def test_demo_on_a_terminal_draws_progress_frames_ending_at_the_total(tmp_path: Path) -> None:
    """On a terminal the demo draws \\r progress frames, the last one at every record stored."""
    argv, env = _demo_command(tmp_path, "--records", "200", "--no-keep")
    status, out = _on_terminal(argv, env, tmp_path / "stderr")
    assert status == 0, out + (tmp_path / "stderr").read_text()
    assert _last_frame(out) == ("#" * 30, ["200", "/", "200", "stored"]), out


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


class _Ended:
    """A worker process that ended before the demo looked at it."""

    exitcode = 0

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass


def test_workers_that_end_before_the_first_frame_still_get_a_frame_at_the_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal, a demo whose workers all ended before the first frame still draws the last
    frame, at the final stored count."""
    master, slave = os.openpty()
    results: queue.Queue[dict[str, int]] = queue.Queue()
    results.put({"calls": 100, "dropped": 0, "spooled": 0})
    try:
        with open(slave, "w") as terminal, _api(100) as api:
            monkeypatch.setattr(sys, "stdout", terminal)
            _demo._watch(api, [_Ended()], results, 100, time.monotonic())
        out = _terminal_output(master, time.monotonic() + DEMO_TIMEOUT)
    finally:
        os.close(master)
    assert _last_frame(out) == ("#" * 30, ["100", "/", "100", "stored"])


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
