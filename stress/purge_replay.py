"""``banyan spool purge`` and ``replay`` in a loop beside live processes under outages.

``--workers`` processes share one spool directory and log ~500 records/s
each for ``--seconds`` s through a fault proxy that answers every batch 503
for 1 s out of every 2 (so batches pile up in the spool and replays fail).
Meanwhile this process runs ``banyan spool purge --dir D`` and ``banyan
spool replay --dir D`` one after the other, until every worker has
drained its spool, shut down and exited. A live process holds each segment
it counts as its own (issue 14), so every purge deletes nothing and every
replay finds nothing to take: at the server each record is stored exactly
once, and nothing is dropped or purged.

Run: ``python -m stress.purge_replay [--workers 4] [--seconds 20]``
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from stress._result import drain, emit, stored_once, use_test_helpers

use_test_helpers()

from faultproxy import Fault, FaultProxy, running  # noqa: E402

import banyan  # noqa: E402
from banyan import _localserver  # noqa: E402

#: Outage cycle: this long down (every batch answered 503), then as long up.
HALF_CYCLE_S = 1.0
#: Purge+replay rounds that run beside the live workers: each of them keeps logging
#: past ``--seconds`` until then (a CLI round can outlast a short run on a loaded machine).
BESIDE_ROUNDS = 2
#: How long past ``--seconds`` a worker waits for those rounds at the most.
ROUNDS_WAIT_S = 120.0


def work(name: str, url: str, key: str, spool: str, seconds: float, *, rounds_done: Path) -> None:
    """One worker process: log for ``seconds`` and until ``rounds_done`` exists, drain, shut
    down, print its stats as JSON."""
    logger = banyan.PromptStackLogger(
        key, url, http2=False, max_retries=1, retry_delay=0.05, flush_interval=0.1,
        spool_dir=spool,
    )  # fmt: skip
    print("ready", flush=True)  # the outages start once every worker logs
    sent, until = 0, time.monotonic() + seconds
    while _logging(until, rounds_done):
        sent += sum(logger.log_prompt(f"{name} {sent + i}", "o" * 300) for i in range(50))
        time.sleep(0.1)
    drained = drain(logger, 90)
    logger.shutdown(10)
    stats = logger.get_stats()
    print(json.dumps({"sent": sent, "drained": drained, "dropped": stats["dropped"],
                      "spooled": stats["spooled"], "replayed": stats["replayed"],
                      "handed_over": stats["spool_handed_over"]}), flush=True)  # fmt: skip


def _logging(until: float, rounds_done: Path) -> bool:
    """Whether a worker logs on: before ``until``, then until ``rounds_done`` exists (bounded)."""
    now = time.monotonic()
    return now < until or (now < until + ROUNDS_WAIT_S and not rounds_done.exists())


def spool_cli(*args: str) -> str:
    """``banyan spool ...``; its stdout (its stderr is echoed)."""
    argv = [sys.executable, "-m", "banyan", "spool", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.stderr.strip():
        print(f"  spool {args[0]}: {done.stderr.strip()}", flush=True)
    return done.stdout


def housekeeping(spool: str, url: str, key: str) -> tuple[int, int]:
    """One purge, then one replay of ``spool``; (records purged, records replayed)."""
    purged = re.search(r"purged (\d+)", spool_cli("purge", "--dir", spool))
    replay = spool_cli("replay", "--dir", spool, "--base-url", url, "--api-key", key,
                       "--timeout", "10")  # fmt: skip
    replayed = re.search(r"replayed (\d+)", replay)
    return int(purged[1]) if purged else 0, int(replayed[1]) if replayed else 0


def flap(proxy: FaultProxy, seconds: float) -> None:
    """Answer every request 503 for ``HALF_CYCLE_S``, then pass them, for ``seconds``."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        proxy.always[:] = [Fault("status", status=503)]
        time.sleep(HALF_CYCLE_S)
        proxy.always[:] = []
        time.sleep(HALF_CYCLE_S)


def run(tmp: Path, workers: int, seconds: float) -> int:
    """The scenario; the exit status."""
    server = _localserver.start(tmp)
    spool, rounds_done = str(tmp / "spool"), tmp / "rounds-done"
    purged = replayed = rounds = 0
    try:
        with running(server.base_url) as proxy:
            me = [sys.executable, "-m", "stress.purge_replay", "--worker"]
            procs = [subprocess.Popen([*me, f"w{n}", proxy.url, server.api_key, spool,
                                       str(seconds), str(rounds_done)],
                                      stdout=subprocess.PIPE, text=True)
                     for n in range(workers)]  # fmt: skip
            # On a loaded machine a worker may take seconds to start: outages that began
            # without it could end before it logs anything, and nothing would be spooled.
            for p in procs:
                if p.stdout is not None:
                    p.stdout.readline()  # "ready" (or "" from a worker that failed to start)
            outages = threading.Thread(target=flap, args=(proxy, seconds), daemon=True)
            outages.start()
            while any(p.poll() is None for p in procs) and rounds < 10_000:
                p, r = housekeeping(spool, proxy.url, server.api_key)
                purged, replayed, rounds = purged + p, replayed + r, rounds + 1
                if rounds == BESIDE_ROUNDS:
                    rounds_done.touch()
            outages.join(seconds + 5)
            rows = [json.loads(p.communicate(timeout=60)[0].splitlines()[-1]) for p in procs]
        stored, duplicated = stored_once(server.stored_ids())
        resent = server.summary()["duplicates"]
    finally:
        server.stop()
    return report(rows, (stored, duplicated, resent), (purged, replayed, rounds))


def report(
    rows: list[dict[str, Any]], server: tuple[int, int, int], cli: tuple[int, int, int]
) -> int:
    """Print the accounting; the exit status (1 unless all stored once, none purged).

    ``server`` is (stored, duplicated, resent), ``cli`` (purged, replayed, rounds).
    """
    (stored, duplicated, resent), (purged, replayed, rounds) = server, cli
    total = Counter[str]()
    for row in rows:
        total.update(row["dropped"])
    dropped = {**total, "purged": purged}
    sent, spooled = sum(row["sent"] for row in rows), sum(row["spooled"] for row in rows)
    handed = sum(row["handed_over"] for row in rows)
    print(f"sent={sent} stored={stored} duplicated={duplicated} purged={purged} "
          f"replayed_by_cli={replayed} rounds={rounds} spooled={spooled} handed_over={handed} "
          f"resent={resent}")  # fmt: skip
    ok = all(row["drained"] for row in rows) and not purged and not handed and spooled > 0
    return emit(
        "purge_replay", sent=sent, stored=stored, duplicated=duplicated, dropped=dropped,
        spooled=spooled, ok=ok and rounds >= BESIDE_ROUNDS, purged=purged, cli_rounds=rounds,
        notes=f"{rounds} purge+replay rounds, {purged} purged, {replayed} replayed by the CLI",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run against a fresh server in a temporary directory."""
    if sys.argv[1:2] == ["--worker"]:
        name, url, key, spool, seconds, rounds_done = sys.argv[2:8]
        work(name, url, key, spool, float(seconds), rounds_done=Path(rounds_done))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="logging time per worker")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="purge-replay-"))
    try:
        return run(tmp, args.workers, args.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
