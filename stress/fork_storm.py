"""Fork storm: hundreds of short-lived children log while the parent keeps logging.

Bounded: ``--children`` forks (default 300), at most ``--concurrency`` alive
at once, each logging 0-40 records; half leave by ``os._exit`` after
``flush()``, half through the interpreter's exit handlers (what ``sys.exit``
runs at top level: the atexit flush), then ``os._exit``. Meanwhile a parent
thread logs without pause and the parent's flusher is mid-request at many of
the forks. Counted at a real ``banyan serve`` by record id.

Prints sent / stored / duplicated / dropped and exits 1 on any mismatch, 2
when a child hangs past the deadline. A child whose flush did not finish
prints its ``get_stats()`` and every thread's stack; children still alive
at the deadline print their stacks (SIGUSR1, see ``stress/_result.py``)
before they are killed.

Run: ``python -m stress.fork_storm [--children N] [--concurrency C]``
"""

from __future__ import annotations

import argparse
import atexit
import faulthandler
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import banyan
from banyan import _localserver
from stress._result import emit, use_test_helpers

use_test_helpers()

from prockit import stored_inputs  # noqa: E402

DEADLINE = 120.0


def child(n: int, records: int, report: int) -> None:
    """Log ``records`` records, leave by one of the two exits, report what did not go out."""
    ok = sum(banyan.log_prompt(input=f"child {n} {i}", output="o") for i in range(records))
    if n % 2:
        # Not sys.exit: unwinding would run the parent's finally blocks (stopping the server).
        atexit._run_exitfuncs()
    else:
        banyan.flush(timeout=30)
    stats = banyan.get_stats()
    unsent = stats["queue_size"] + stats["in_flight"]
    if unsent:
        # Issue #7: two children's flush(30) once timed out; show where their threads waited.
        print(f"child {n} (pid {os.getpid()}): {unsent} unsent; {stats}", file=sys.stderr)
        faulthandler.dump_traceback(all_threads=True)
    os.write(report, f"{ok} {stats['logs_dropped']} {int(unsent == 0)}\n".encode())
    os._exit(0)


def parent_logger(stop: threading.Event, counter: list[int]) -> None:
    """Log from a second parent thread until told to stop."""
    while not stop.is_set():
        counter[0] += banyan.log_prompt(input=f"parent {counter[0]}", output="o")
        if counter[0] % 20 == 0:
            time.sleep(0.001)


def storm(children: int, concurrency: int, seed: int) -> tuple[int, list[int]]:
    """Fork the children; the records they queued and the exit codes that were not 0."""
    rng = random.Random(seed)
    read, write = os.pipe()
    alive: set[int] = set()
    bad: list[int] = []
    deadline = time.monotonic() + DEADLINE
    for n in range(children):
        while len(alive) >= concurrency:
            reap(alive, bad, deadline, block=True)
        records = rng.randint(0, 40)
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                child(n, records, write)
            finally:
                os._exit(70)
        alive.add(pid)
    while alive:
        reap(alive, bad, deadline, block=True)
    os.close(write)
    with os.fdopen(read) as lines:
        reports = [tuple(map(int, line.split())) for line in lines]
    if len(reports) != children:
        bad.append(-len(reports))
    queued = sum(r[0] for r in reports)
    dropped = sum(r[1] for r in reports)
    unflushed = sum(1 - r[2] for r in reports)
    return queued, [*bad, *([-1] * unflushed), *([-2] * (dropped > 0))]


def reap(alive: set[int], bad: list[int], deadline: float, block: bool) -> None:
    """Collect finished children; kill everything past the deadline."""
    while True:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            alive.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if code:
                bad.append(code)
            return
        if time.monotonic() > deadline:
            for pid in alive:
                os.kill(pid, signal.SIGUSR1)
            time.sleep(1)
            for pid in alive:
                os.kill(pid, signal.SIGKILL)
            print(f"deadline: {len(alive)} children still alive (deadlock?)", file=sys.stderr)
            sys.exit(2)
        if not block:
            return
        time.sleep(0.002)


def main() -> int:
    """Run the storm against a fresh server and print the accounting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # Not TemporaryDirectory: its weakref finalizer would run in the atexit children.
    tmp = tempfile.mkdtemp(prefix="fork-storm-")
    server = _localserver.start(Path(tmp))
    try:
        return run(server, args.children, args.concurrency, args.seed)
    finally:
        banyan.shutdown(timeout=5)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run(server: object, children: int, concurrency: int, seed: int) -> int:
    """The storm proper, against ``server``; the exit status."""
    assert isinstance(server, _localserver.LocalServer)
    # A short interval keeps the parent's flusher busy, so many forks land mid-request.
    banyan.configure(api_key=server.api_key, base_url=server.base_url, flush_interval=0.02)
    stop, counter = threading.Event(), [0]
    thread = threading.Thread(target=parent_logger, args=(stop, counter), daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        queued, bad = storm(children, concurrency, seed)
    finally:
        stop.set()
        thread.join(10)
    parent_ok = banyan.flush(timeout=30)
    parent_dropped = banyan.get_stats()["logs_dropped"]
    sent = queued + counter[0]
    ids = server.stored_ids()
    from_parent = sum(n for text, n in stored_inputs(server).items() if text.startswith("parent "))
    duplicated = len(ids) - len(set(ids)) + server.summary()["duplicates"]
    dropped = parent_dropped + bad.count(-2)
    print(
        f"children   {children:>9,}  ({concurrency} at a time, {time.monotonic() - started:.1f} s)"
    )
    print(f"sent       {sent:>9,}  (parent {counter[0]:,}, children {queued:,})")
    stored = len(set(ids))
    print(f"stored     {stored:>9,}  (parent {from_parent:,}, children {stored - from_parent:,})")
    print(f"duplicated {duplicated:>9,}")
    print(f"dropped    {dropped:>9,}")
    problems = [code for code in bad if code != -2]
    if problems:
        print(f"children that failed: {len(problems)} (exit codes / unflushed: {problems[:10]})")
    ok = parent_ok and not problems and not dropped and not duplicated and len(set(ids)) == sent
    print("OK: every record stored exactly once" if ok else "MISMATCH")
    reasons = {**banyan.get_stats()["dropped"], "child": bad.count(-2)}
    return emit(
        "fork_storm", sent=sent, stored=stored, duplicated=duplicated, dropped=reasons,
        spooled=banyan.get_stats()["spooled"], ok=ok, notes=f"{children} children",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
