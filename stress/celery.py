"""Real celery: prefork pool, ``worker_max_tasks_per_child=1``, a private redis-server.

A celery worker (``tests/process/celeryapp.py``: banyan configured in the
main process before billiard forks, one record per task, the main process
logs one record of its own) runs with ``-P prefork -c 2`` and a new child
for every task; pool children leave by ``os._exit``, so only
``banyan.integrations.celery.install()`` gets their records out.
``--tasks`` tasks are sent (every fourth also flushes inside the task),
their results awaited, then the worker is stopped with SIGTERM. Every task's
record must be stored exactly once. The broker is a redis-server started
here on a free 127.0.0.1 port without persistence; without redis-server the
scenario prints SKIP and exits 0.

Run: ``python -m stress.celery [--tasks 100]``
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from stress._result import census, emit, skip, use_test_helpers

use_test_helpers()

from prockit import child_env, port_open, running, stop, wait_for  # noqa: E402

from banyan import _localserver  # noqa: E402

DEADLINE = 240.0


def work(broker: str, server: _localserver.LocalServer, tmp: Path, tasks: int) -> tuple:
    """Run the worker and the tasks; (inputs sent, distinct child pids, worker's exit code)."""
    import celery

    env = child_env(server, BANYAN_TEST_BROKER=broker, BANYAN_SPOOL_DIR=str(tmp / "spool"))  # type: ignore[arg-type]
    cmd = [sys.executable, "-m", "celery", "-A", "celeryapp", "worker", "-P", "prefork",
           "-c", "2", "--without-heartbeat", "--without-gossip", "--without-mingle",
           "-l", "warning"]  # fmt: skip
    client = celery.Celery("client", broker=broker, backend=broker)
    try:
        with running(cmd, tmp / "worker.log", env=env, cwd=tmp) as worker:
            results = [client.send_task("celeryapp.work", args=(n, n % 4 == 0))
                       for n in range(tasks)]  # fmt: skip
            deadline = time.monotonic() + DEADLINE
            pids = {r.get(timeout=max(1.0, deadline - time.monotonic())) for r in results}
            code = stop(worker, timeout=30)
    finally:
        client.close()
    return ["master-boot", *(f"task {n}" for n in range(tasks))], pids, code


def run(tmp: Path, redis: str, tasks: int) -> int:
    """The scenario; the exit status."""
    port = _localserver.free_port()
    cmd = [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--daemonize", "no", "--dir", str(tmp)]  # fmt: skip
    server = _localserver.start(tmp)
    try:
        with running(cmd, tmp / "redis.log"):
            wait_for(lambda: port_open(port), 15, "redis-server to listen")
            sent, pids, code = work(f"redis://127.0.0.1:{port}/0", server, tmp, tasks)
        found, stored, duplicated = census(server)
    finally:
        server.stop()
    missing = sum((Counter(sent) - found).values())
    print(f"sent={len(sent)} stored={stored} duplicated={duplicated} missing={missing} "
          f"children={len(pids)} worker exit code={code}")  # fmt: skip
    return emit(
        "celery", sent=len(sent), stored=stored, duplicated=duplicated,
        ok=not missing and code == 0 and len(pids) == tasks,
        notes=f"{len(pids)} pool children (one per task)",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run against a fresh server, or print SKIP."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args()
    redis = shutil.which("redis-server")
    if redis is None:
        return skip("celery", "redis-server is not installed (apt-get install redis-server)")
    if importlib.util.find_spec("celery") is None:
        return skip("celery", "celery is not installed (pip install -e '.[dev]')")
    tmp = Path(tempfile.mkdtemp(prefix="celery-"))
    try:
        return run(tmp, redis, args.tasks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
