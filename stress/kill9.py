"""kill -9 under load: durable-mode workers are killed mid-stream, a later process replays.

``--rounds`` times, ``--workers`` processes log without pause in durable
mode (~10,000 records/s each) against a live server, the spool being their queue; each one
reports on stdout how many of its ``log_prompt`` calls have returned, and is
SIGKILLed a random 0.3-1.5 s after every worker's first report (on a loaded machine
``import banyan`` alone can take longer than that). Then this process opens the same spool,
replays what the dead left, and every reported record is looked up at the
server by its input.

Prints sent / stored / duplicated / dropped / spooled and exits 1 on any
mismatch: a reported record missing, any record stored twice, or no record
reported at all (a run that proved nothing).

Run: ``python -m stress.kill9 [--rounds 5] [--workers 4]``
"""

from __future__ import annotations

import argparse
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(HERE / "process"))

from prockit import stored_inputs  # noqa: E402

import banyan  # noqa: E402
from banyan import _localserver  # noqa: E402
from stress._result import emit  # noqa: E402

#: How long a round waits for its workers' first reports (imports on a loaded machine).
FIRST_REPORT_S = 60.0

WORKER = textwrap.dedent(
    """
    import os, sys, time, banyan
    banyan.configure(api_key=sys.argv[1], base_url=sys.argv[2], durability="durable",
                     spool_dir=sys.argv[4], flush_interval=0.05)
    i = 0
    while True:
        if not banyan.log_prompt(f"{sys.argv[3]} {i}", "o" * 500):
            sys.exit(3)
        i += 1
        if i % 50 == 0:
            os.write(1, b"%d\\n" % i)
            time.sleep(0.005)  # ~10,000 records/s: within what one replay thread sends
    """
)


def round_of(
    server: _localserver.LocalServer, spool: Path, name: str, workers: int, rng: random.Random
) -> dict[str, int]:
    """Start the workers, kill each after a random time; the records each reported."""
    argv = [sys.executable, "-c", WORKER, server.api_key, server.base_url]
    procs = {
        f"{name}-w{n}": subprocess.Popen(
            [*argv, f"{name}-w{n}", str(spool)], stdout=subprocess.PIPE, text=True
        )
        for n in range(workers)
    }
    first = first_reports(procs, FIRST_REPORT_S)
    time.sleep(rng.uniform(0.3, 1.5))
    reported = {}
    for label, proc in procs.items():
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        lines = [first[label], *out.split()]
        reported[label] = int(lines[-1] or 0)
    return reported


def first_reports(procs: dict[str, subprocess.Popen[str]], limit: float) -> dict[str, str]:
    """Each worker's first report line, waiting at most ``limit`` s in all ("" if none)."""
    deadline = time.monotonic() + limit
    first = {}
    for label, proc in procs.items():
        assert proc.stdout is not None
        remaining = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        first[label] = proc.stdout.readline().strip() if ready else ""
    return first


def run(tmp: Path, rounds: int, workers: int, seed: int) -> int:
    """The scenario; the exit status."""
    rng = random.Random(seed)
    server = _localserver.start(tmp)
    spool = tmp / "spool"
    try:
        reported: dict[str, int] = {}
        for r in range(rounds):
            reported.update(round_of(server, spool, f"r{r}", workers, rng))
        logger = banyan.PromptStackLogger(server.api_key, server.base_url, spool_dir=str(spool))
        deadline = time.monotonic() + 120
        logger.flush(30)
        while logger.get_stats()["spool_segments"] and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = logger.get_stats()
        logger.shutdown(10)
        return report(stored_inputs(server), reported, stats)
    finally:
        server.stop()


def report(found: Counter[str], reported: dict[str, int], stats: dict[str, int]) -> int:
    """Print the accounting; 1 on a mismatch."""
    sent = sum(reported.values())
    missing = sum(1 for label, n in reported.items() for i in range(n) if not found[f"{label} {i}"])
    duplicated = sum(n - 1 for n in found.values() if n > 1)
    row = {"sent": sent, "stored": len(found), "missing": missing, "duplicated": duplicated,
           "dropped": stats["logs_dropped"], "spooled_by_dead": stats["replayed"],
           "corrupt_frames": stats["spool_corrupt_frames"]}  # fmt: skip
    print("  ".join(f"{k}={v}" for k, v in row.items()))
    bad = missing or duplicated or stats["logs_dropped"] or not sent
    if not sent:
        print("NOTHING LOGGED: every worker died before its first report", file=sys.stderr)
    elif bad:
        print("MISMATCH", file=sys.stderr)
    # Workers log on after their last report; those records are stored too, but not "sent".
    return emit(
        "kill9", sent=sent, stored=sent - missing, duplicated=duplicated, dropped=stats["dropped"],
        spooled=stats["replayed"], ok=not bad,
        notes=f"{len(reported)} killed; {len(found) - sent + missing} stored beyond their reports",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run against a fresh server in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kill9-"))
    try:
        return run(tmp, args.rounds, args.workers, args.seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
