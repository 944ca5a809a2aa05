"""Disk limit: the server is down and the spool is capped small; the oldest go first.

With the server stopped, a durable logger with ``spool_max_bytes`` of
``--limit-kib`` KiB logs ``--records`` records, several times what fits:
the oldest segments must be deleted and counted as ``spool_evicted``, the
directory must be within its bound once logging stops (and never above it
by more than the one segment being opened: a quarter of the bound, seen
while sampling every 100 records), and the newest records must survive.
The server then comes back on the same port and database, and every record
that was not evicted must be stored exactly once; the evicted ones must be
exactly the oldest.

Run: ``python -m stress.disklimit [--records 20000] [--limit-kib 1024]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import banyan
from banyan import _localserver
from stress._result import census, drain, emit


def fill(logger: banyan.PromptStackLogger, records: int) -> tuple[int, int]:
    """Log the records; (records accepted, largest spool size seen)."""
    sent = peak = 0
    for i in range(records):
        sent += logger.log_prompt(f"rec {i}", "o" * 400)
        if i % 100 == 0:
            peak = max(peak, logger.get_stats()["spool_bytes"])
    return sent, max(peak, logger.get_stats()["spool_bytes"])


def run(tmp: Path, records: int, limit: int) -> int:
    """The scenario; the exit status."""
    server = _localserver.start(tmp)
    server.stop()
    logger = banyan.PromptStackLogger(
        server.api_key, server.base_url, durability="durable", spool_dir=str(tmp / "spool"),
        spool_max_bytes=limit, retry_delay=0.05, max_retry_delay=0.5, flush_interval=0.05,
    )  # fmt: skip
    try:
        sent, peak = fill(logger, records)
        at_rest = logger.get_stats()["spool_bytes"]
        server = _localserver.start(tmp, port=server.port, db=server.db)
        drained = drain(logger, 60)
        logger.shutdown(10)
        found, stored, duplicated = census(server)
    finally:
        logger.shutdown(10)
        server.stop()
    stats = logger.get_stats()
    kept = sorted(int(name.split()[1]) for name in found)
    # The evicted are exactly the oldest: what is stored is one unbroken run up to the last.
    newest = bool(kept) and kept == list(range(sent - len(kept), sent))
    evicted = stats["dropped"]["spool_evicted"]
    bounded = at_rest <= limit and peak <= limit * 5 // 4
    print(f"sent={sent} stored={stored} evicted={evicted} spool_bytes={at_rest} peak={peak} "
          f"limit={limit} newest_kept={newest}")  # fmt: skip
    return emit(
        "disklimit", sent=sent, stored=stored, duplicated=duplicated, dropped=stats["dropped"],
        spooled=stats["spooled"], ok=drained and newest and evicted > 0 and bounded,
        notes=f"spool {at_rest >> 10} KiB at rest, peak {peak >> 10} KiB; bound {limit >> 10} KiB",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run against a fresh server in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--limit-kib", type=int, default=1024, help="spool_max_bytes in KiB")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="disklimit-"))
    try:
        return run(tmp, args.records, args.limit_kib << 10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
