"""Real gunicorn with --preload and max_requests recycling: records sent = records stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from prockit import HERE, child_env, marks, port_open, running, stop, stored_inputs, wait_for
from serverproc import free_port

if TYPE_CHECKING:
    from serverproc import Server

pytest.importorskip("gunicorn", reason="gunicorn is not installed (pip install -e '.[dev]')")

REQUESTS = 200
#: Gunicorn's --graceful-timeout: after it, the master SIGKILLs the workers left and exits 0.
GRACE = 20


#: Gunicorn options per case: banyan's hooks config, or none (fork handling alone).
CONFIGS = {"hooks": ["-c", str(HERE / "gunicorn_conf.py")], "no-hooks": []}


@pytest.mark.parametrize(
    ("worker", "config"),
    [(["-k", "sync"], "hooks"), (["-k", "gthread", "--threads", "4"], "hooks"),
     (["-k", "sync"], "no-hooks")],
    ids=["sync", "gthread", "sync-no-hooks"],
)  # fmt: skip
def test_preloaded_recycled_workers_deliver_every_request(
    server: Server, tmp_path: Path, worker: list[str], config: str
) -> None:
    """Every request's record and the master's own arrive once; workers exit via atexit too,
    and without banyan's gunicorn hooks (post_fork, worker_exit) nothing is lost either."""
    port, folder = free_port(), tmp_path / "marks"
    folder.mkdir()
    cmd = [sys.executable, "-m", "gunicorn", "-w", "2", "--preload", "--max-requests", "20",
           "--max-requests-jitter", "5", *worker, *CONFIGS[config],
           "-b", f"127.0.0.1:{port}", "--graceful-timeout", str(GRACE), "wsgiapp:app"]  # fmt: skip
    env = child_env(server, BANYAN_TEST_MARKS=str(folder))
    with running(cmd, tmp_path / "gunicorn.log", env=env, cwd=tmp_path) as proc:
        wait_for(lambda: port_open(port), 30, "gunicorn to listen")
        pids = set()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for n in range(REQUESTS):
                response = client.get("/", params={"n": str(n)})
                assert response.status_code == 200, response.text
                pids.add(int(response.text))
        # A worker forked as SIGTERM arrives can miss it (it still has the master's handler)
        # and is killed at GRACE: the master must outlive that, or it is SIGKILLed itself.
        assert stop(proc, timeout=GRACE + 60) == 0, (tmp_path / "gunicorn.log").read_text()
    inputs = stored_inputs(server)
    assert inputs == {"master-boot": 1, **{f"request n={n}": 1 for n in range(REQUESTS)}}
    assert server.summary()["duplicates"] == 0
    assert len(pids) >= REQUESTS // 25  # max_requests recycled the workers
    # Measured: recycled and stopped workers leave through sys.exit, so atexit runs.
    exits = {"served", "atexit"} | ({"worker_exit"} if config == "hooks" else set())
    seen = marks(folder)
    assert all(seen[pid] == exits for pid in pids), seen


def test_the_documented_config_passes_gunicorns_own_check(tmp_path: Path) -> None:
    """docs/deployment.md's gunicorn.conf.py, as written: gunicorn validates each hook's
    arity (worker_exit had a third, defaulted parameter, and gunicorn refused to start)."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "from banyan.integrations.gunicorn import post_fork, worker_exit  # noqa: F401\n"
    )
    (tmp_path / "app.py").write_text("def app(environ, start_response):\n    return []\n")
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(conf), "--check-config", "app:app"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
