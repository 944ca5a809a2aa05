"""Real gunicorn, ``--preload`` and ``--max-requests`` recycling, under a bounded load.

For each worker class (sync, and gthread with 4 threads) a gunicorn with 2
workers, ``--max-requests 20 --max-requests-jitter 5`` serves
``tests/process/wsgiapp.py`` (one record per request; the preloaded master
logs one record of its own, which its forked workers must not send again).
``--requests`` requests are made from 4 client threads, so workers are
recycled dozens of times mid-load; then gunicorn is stopped with SIGTERM.
Every answered request's record must be stored exactly once.

Run: ``python -m stress.gunicorn [--requests 1000]``
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from stress._result import census, emit, skip, use_test_helpers

use_test_helpers()

from prockit import HERE, child_env, port_open, running, stop, wait_for  # noqa: E402

from banyan import _localserver  # noqa: E402

WORKERS = {"sync": ["-k", "sync"], "gthread": ["-k", "gthread", "--threads", "4"]}


def load(port: int, kind: str, requests: int) -> tuple[list[str], set[int]]:
    """Make the requests from 4 threads; the inputs of those answered 200, and the pids seen."""

    def one(client: httpx.Client, n: int) -> tuple[str, int] | None:
        response = client.get("/", params={"n": f"{kind}-{n}"})
        return (f"request n={kind}-{n}", int(response.text)) if response.is_success else None

    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(4) as pool:
        answers = [a for a in pool.map(lambda n: one(client, n), range(requests)) if a]
    return [a[0] for a in answers], {a[1] for a in answers}


def serve(server: _localserver.LocalServer, tmp: Path, kind: str, requests: int) -> tuple:
    """One gunicorn run; (inputs sent, pids seen, gunicorn's exit code)."""
    port = _localserver.free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-w", "2", "--preload", "--max-requests", "20",
           "--max-requests-jitter", "5", *WORKERS[kind], "-c", str(HERE / "gunicorn_conf.py"),
           "-b", f"127.0.0.1:{port}", "--graceful-timeout", "20", "wsgiapp:app"]  # fmt: skip
    env = child_env(server, BANYAN_SPOOL_DIR=str(tmp / "spool"))  # type: ignore[arg-type]
    with running(cmd, tmp / f"gunicorn-{kind}.log", env=env, cwd=tmp) as proc:
        wait_for(lambda: port_open(port), 30, "gunicorn to listen")
        sent, pids = load(port, kind, requests)
        code = stop(proc, timeout=30)
    return ["master-boot", *sent], pids, code


def run(tmp: Path, requests: int) -> int:
    """The scenario; the exit status."""
    server = _localserver.start(tmp)
    try:
        sent: list[str] = []
        pids: dict[str, int] = {}
        codes = []
        for kind in WORKERS:
            inputs, seen, code = serve(server, tmp, kind, requests)
            sent += inputs
            pids[kind] = len(seen)
            codes.append(code)
        found, stored, duplicated = census(server)
    finally:
        server.stop()
    missing = sum((Counter(sent) - found).values())
    print(f"sent={len(sent)} stored={stored} duplicated={duplicated} missing={missing} "
          f"worker pids={pids} gunicorn exit codes={codes}")  # fmt: skip
    recycled = all(n >= requests // 25 for n in pids.values())
    return emit(
        "gunicorn", sent=len(sent), stored=stored, duplicated=duplicated, ok=not missing
        and codes == [0, 0] and recycled and len(sent) == 2 + 2 * requests,
        notes=f"worker processes: sync {pids['sync']}, gthread {pids['gthread']}",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run against a fresh server in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per worker class")
    args = parser.parse_args()
    if importlib.util.find_spec("gunicorn") is None:
        return skip("gunicorn", "gunicorn is not installed (pip install -e '.[dev]')")
    tmp = Path(tempfile.mkdtemp(prefix="gunicorn-"))
    try:
        return run(tmp, args.requests)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
