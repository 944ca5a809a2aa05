"""Real celery (redis broker, prefork pool recycled after every task): every record arrives."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prockit import child_env, marks, running, stop, stored_inputs, wait_for
from serverproc import PortTaken, on_a_free_port, port_taken

if TYPE_CHECKING:
    from serverproc import Server

celery = pytest.importorskip("celery", reason="celery is not installed (pip install -e '.[dev]')")

TASKS = 20
#: A celery worker on tests/process/celeryapp.py: a prefork pool of 2, recycled after each task.
WORKER = [sys.executable, "-m", "celery", "-A", "celeryapp", "worker", "-P", "prefork",
          "-c", "2", "--without-heartbeat", "--without-gossip", "--without-mingle",
          "-l", "warning"]  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set and redis-server is not installed: the celery test cannot run")
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    with contextlib.ExitStack() as stack:
        port = on_a_free_port(functools.partial(_redis, binary, tmp_path, stack))
        yield f"redis://127.0.0.1:{port}/0"


def _redis(binary: str, folder: Path, stack: contextlib.ExitStack, port: int) -> int:
    """redis-server on ``port``, answering; PortTaken when it exits because the port is taken."""
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--daemonize", "no", "--dir", str(folder)]  # fmt: skip
    proc = stack.enter_context(running(cmd, folder / "redis.log"))
    wait_for(lambda: proc.poll() is not None or _ours(port, folder), 15, "redis-server to answer")
    if proc.poll() is not None:
        error = PortTaken if port_taken(port) else AssertionError
        raise error(f"redis-server exited:\n{(folder / 'redis.log').read_text()}")
    return port


def _ours(port: int, folder: Path) -> bool:
    """Whether the redis-server answering on ``port`` is the one working in ``folder``."""
    import redis

    with contextlib.suppress(redis.RedisError), redis.Redis(port=port, socket_timeout=1) as client:
        return bool(client.config_get("dir").get("dir") == str(folder.resolve()))
    return False


def test_prefork_children_recycled_after_each_task_deliver_every_record(
    server: Server, broker: str, tmp_path: Path
) -> None:
    """Every task's record and the master's arrive once; flush() inside a task returns."""
    folder = tmp_path / "marks"
    folder.mkdir()
    env = child_env(server, BANYAN_TEST_BROKER=broker, BANYAN_TEST_MARKS=str(folder))
    client = celery.Celery("client", broker=broker, backend=broker)
    try:
        with running(WORKER, tmp_path / "worker.log", env=env, cwd=tmp_path) as worker:
            # Every fourth task also flushes inside the task (a hang there fails the get()).
            results = [
                client.send_task("celeryapp.work", args=(n, n % 4 == 0)) for n in range(TASKS)
            ]
            pids = {result.get(timeout=60) for result in results}
            assert stop(worker, timeout=30) == 0, (tmp_path / "worker.log").read_text()
    finally:
        client.close()
    inputs = stored_inputs(server)
    assert inputs == {"master-boot": 1, **{f"task {n}": 1 for n in range(TASKS)}}
    assert server.summary()["duplicates"] == 0
    assert len(pids) == TASKS  # worker_max_tasks_per_child=1: a new child per task
    # Measured: billiard sends worker_process_shutdown in the child, then os._exit: no atexit.
    seen = marks(folder)
    assert all(seen[pid] == {"worker_process_shutdown"} for pid in pids), seen


def test_pool_children_spool_what_a_down_server_cannot_take(
    server: Server, broker: str, tmp_path: Path
) -> None:
    """A server that takes connections and never answers: at its final deadline each
    recycled child spools the record still in flight before os._exit (a flush alone left
    it in memory, lost uncounted), and a later replay delivers every one."""
    spool = tmp_path / "spool"
    stall = socket.create_server(("127.0.0.1", 0), backlog=128)  # never accepts
    env = child_env(
        server, BANYAN_TEST_BROKER=broker, BANYAN_SPOOL_DIR=str(spool), BANYAN_TEST_ATEXIT="1",
        BANYAN_BASE_URL=f"http://127.0.0.1:{stall.getsockname()[1]}",
    )  # fmt: skip
    client = celery.Celery("client", broker=broker, backend=broker)
    try:
        with running(WORKER, tmp_path / "worker.log", env=env, cwd=tmp_path) as worker:
            results = [client.send_task("celeryapp.work", args=(n, False)) for n in range(4)]
            for result in results:
                result.get(timeout=60)
            assert stop(worker, timeout=30) == 0, (tmp_path / "worker.log").read_text()
    finally:
        client.close()
        stall.close()
    # The spool of the unreachable URL (one directory per server and project), sent to ours.
    (directory,) = [path for path in spool.iterdir() if path.is_dir()]
    replay = [sys.executable, "-m", "banyan", "spool", "replay", "--dir", str(directory),
              "--base-url", server.base_url, "--api-key", server.api_key]  # fmt: skip
    done = subprocess.run(replay, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stored_inputs(server) == {"master-boot": 1, **{f"task {n}": 1 for n in range(4)}}


def test_install_is_idempotent_and_flushes_after_tasks_on_request() -> None:
    """install() twice connects each receiver once; flush_after_task adds task_postrun."""
    from celery import signals  # type: ignore[import-untyped]

    from banyan.integrations import celery as banyan_celery

    try:
        banyan_celery.install()
        banyan_celery.install(flush_after_task=True)
        for signal in (signals.worker_process_shutdown, signals.worker_shutdown,
                       signals.task_postrun, signals.worker_process_init):  # fmt: skip
            ours = [r for r in signal.receivers if r[0][0] == banyan_celery._UID]
            assert len(ours) == 1, signal
        banyan_celery.install()
        assert not [r for r in signals.task_postrun.receivers if r[0][0] == banyan_celery._UID]
    finally:
        for signal in (signals.worker_process_shutdown, signals.worker_shutdown,
                       signals.task_postrun, signals.worker_process_init):  # fmt: skip
            signal.disconnect(dispatch_uid=banyan_celery._UID)


def test_redis_server_binary_is_found_in_ci() -> None:
    """Where CI is set, the redis-server binary must run, so the celery test never skips there."""
    if not os.environ.get("CI"):
        pytest.skip("CI is not set: without redis-server the celery test skips")
    binary = shutil.which("redis-server")
    assert binary is not None, "CI is set and redis-server is not on PATH"
    version = subprocess.run([binary, "--version"], capture_output=True, check=False)
    assert version.returncode == 0, version.stderr
