"""Outage and recovery: the server goes away for ``--outage`` s under a steady load, then returns.

Several threads log ~1,000 records/s each for ``--seconds`` s (buffered mode, the
default, with a small ring so that the outage overflows it). The server is
stopped (SIGTERM) after a third of the run and started again on the same
port and database ``--outage`` s later. Afterwards the logger flushes, waits
for the spool to drain, and every record is looked up at the server by id.

Memory is checked twice: the ring's byte count, sampled, and the process's
peak RSS (``VmHWM``, reset when the server goes down) until the spool has
been replayed. Its growth over the RSS when the server went down must stay
under ``RSS_BOUND``, derived from the ring's and the batches' limits: what
does not fit goes to disk, not to memory, however long the outage.

Prints sent / stored / duplicated / dropped / spooled and exits 1 on any
mismatch: a record missing or stored twice, a drop, the ring or the RSS above
its bound.

Run: ``python -m stress.outage [--seconds 60] [--outage 30] [--threads 4]``
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import banyan
from banyan import _localserver
from stress._result import emit

RING_BYTES = 4 << 20
#: Small batches keep what a logger holds beyond its ring small beside it.
BATCH_BYTES = 1 << 20
#: Records held beyond the ring: a batch per worker (max_in_flight=2) and one being
#: replayed, each beside its encoded body, and the 4 MiB segment read for replay.
IN_FLIGHT = 3 * 2 * BATCH_BYTES + (4 << 20)
#: What malloc keeps after freeing (glibc: ~40 MiB of growth measured here after 30 s
#: or 90 s alike); keeping every spooled record (~60 MB at --threads 2) still shows.
RSS_BOUND = RING_BYTES + IN_FLIGHT + (40 << 20)


def status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) << 10
    raise LookupError(field)


def reset_peak_rss() -> int:
    """Reset ``VmHWM`` to the current RSS (clear_refs "5", see proc(5)); the current RSS."""
    # Where the reset is refused, VmHWM stays the lifetime peak: a stricter check still.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return status_bytes("VmRSS")


def load(
    logger: banyan.PromptStackLogger, name: str, stop: threading.Event, out: list[int]
) -> None:
    """Log ~1 KB records, ~1,000 a second, until told to stop; ``out[0]`` counts those accepted."""
    while not stop.is_set():
        for _ in range(50):
            out[0] += logger.log_prompt(f"{name} {out[0]}", "o" * 1000)
        # Paced: a 30 s outage at 4 threads is ~120 MB, inside the 256 MiB spool bound.
        time.sleep(0.05)


def run(tmp: Path, seconds: float, outage: float, threads: int) -> int:
    """The scenario proper; the exit status."""
    server = _localserver.start(tmp)
    logger = banyan.PromptStackLogger(
        server.api_key, server.base_url, max_queue_bytes=RING_BYTES, batch_max_bytes=BATCH_BYTES,
        spool_dir=str(tmp / "spool"),
    )  # fmt: skip
    stop, counts = threading.Event(), [[0] for _ in range(threads)]
    workers = [threading.Thread(target=load, args=(logger, f"t{n}", stop, counts[n]))
               for n in range(threads)]  # fmt: skip
    peak = rss_base = 0
    start = time.monotonic()
    for worker in workers:
        worker.start()
    phases = [(seconds / 3, None), (outage, "down"), (seconds - seconds / 3, "up")]
    try:
        for length, action in phases:
            if action == "down":
                rss_base = reset_peak_rss()
                server.stop()
            elif action == "up":
                server = _localserver.start(tmp, port=server.port, db=server.db)
            until = time.monotonic() + length
            while time.monotonic() < until:
                peak = max(peak, logger.get_stats()["queue_bytes"])
                time.sleep(0.05)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    try:
        drain(logger, 120)
        memory = {"peak_ring_bytes": peak, "rss_growth_bytes": status_bytes("VmHWM") - rss_base}
        return report(logger, server, sum(c[0] for c in counts), memory, time.monotonic() - start)
    finally:
        logger.shutdown(10)
        server.stop()


def drain(logger: banyan.PromptStackLogger, timeout: float) -> None:
    """Flush, then wait for the spool to be replayed."""
    deadline = time.monotonic() + timeout
    logger.flush(timeout)
    while logger.get_stats()["spool_segments"] and time.monotonic() < deadline:
        time.sleep(0.1)


def report(
    logger: banyan.PromptStackLogger,
    server: _localserver.LocalServer,
    sent: int,
    memory: dict[str, int],
    took: float,
) -> int:
    """Print the accounting and ``memory`` (ring peak, RSS growth); 1 on a mismatch."""
    stats = logger.get_stats()
    ids = server.stored_ids()
    stored, unique = len(ids), len(set(ids))
    row = {"sent": sent, "stored": unique, "duplicated": stored - unique,
           "dropped": stats["logs_dropped"], "spooled": stats["spooled"],
           "replayed": stats["replayed"], "resent": server.summary()["duplicates"],
           **memory, "seconds": round(took, 1)}  # fmt: skip
    print("  ".join(f"{k}={v}" for k, v in row.items()))
    print("dropped by reason:", {k: v for k, v in stats["dropped"].items() if v})
    peak, growth = memory["peak_ring_bytes"], memory["rss_growth_bytes"]
    bad = unique != sent or stored != unique or stats["logs_dropped"] or peak > RING_BYTES
    bad = bad or growth > RSS_BOUND
    if bad:
        print("MISMATCH", file=sys.stderr)
    return emit(
        "outage", sent=sent, stored=unique, duplicated=stored - unique, dropped=stats["dropped"],
        spooled=stats["spooled"], ok=not bad, **memory,
        notes=f"ring peak {peak >> 10} KiB, RSS +{growth >> 20} MiB (bound {RSS_BOUND >> 20})",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run against a fresh server in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load time, outage excluded")
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="outage-"))
    try:
        return run(tmp, args.seconds, args.outage, args.threads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
