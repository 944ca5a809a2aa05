"""5xx and 429 storms: bursts of failing answers, with and without Retry-After, under load.

A fault proxy (``tests/faultproxy.py``) sits between the logger and a real
``banyan serve`` on 127.0.0.1. ``--rounds`` times, a burst of faults is
queued for the next batch requests (500s, 503s, 429 with ``Retry-After: 1``,
429 with ``Retry-After: 0``, then a long run of 503s that outlasts the
retries, so that batches go to the spool and are replayed), and
``--records`` records are logged behind it. The proxy answers a fault
without forwarding, so no record reaches the server twice; the logger must
retry, honour Retry-After (bounded by ``max_retry_after``), spool what
exhausts its retries, replay it, and lose nothing.

Run: ``python -m stress.storms [--rounds 8] [--records 2000]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from stress._result import drain, emit, stored_once, use_test_helpers

use_test_helpers()

from faultproxy import FaultProxy, running  # noqa: E402

import banyan  # noqa: E402
from banyan import _localserver  # noqa: E402
from banyan._wire import BATCH_PATH  # noqa: E402

#: One burst per round, cycled: (fault kind options, how many requests it hits).
BURSTS = [
    ({"status": 500}, 6),
    ({"status": 503}, 6),
    ({"status": 429, "retry_after": "1"}, 2),
    ({"status": 429, "retry_after": "0"}, 6),
    ({"status": 503}, 30),  # more than max_retries: the batch is spooled, then replayed
]


def storm(proxy: FaultProxy, logger: banyan.PromptStackLogger, rounds: int, records: int) -> int:
    """Queue a burst, log behind it; the records accepted and the faults queued."""
    sent = injected = 0
    for r in range(rounds):
        options, times = BURSTS[r % len(BURSTS)]
        proxy.push("status", times=times, path=BATCH_PATH, **options)
        injected += times
        for i in range(records):
            sent += logger.log_prompt(f"storm {r} {i}", "o" * 200, metadata={"round": r})
            if i % 200 == 0:
                time.sleep(0.01)
        logger.flush(30)
    return sent


def run(tmp: Path, rounds: int, records: int) -> int:
    """The scenario; the exit status."""
    server = _localserver.start(tmp)
    try:
        with running(server.base_url) as proxy:
            logger = banyan.PromptStackLogger(
                server.api_key, proxy.url, http2=False, retry_delay=0.02, max_retry_delay=0.5,
                max_retries=5, max_retry_after=2.0, flush_interval=0.05, batch_size=250,
                spool_dir=str(tmp / "spool"),
            )  # fmt: skip
            try:
                sent = storm(proxy, logger, rounds, records)
                drained = drain(logger, 60)
                stats = logger.get_stats()
            finally:
                logger.shutdown(10)
            left = len(proxy.faults)
        stored, duplicated = stored_once(server.stored_ids())
        resent = server.summary()["duplicates"]
    finally:
        server.stop()
    print(f"sent={sent} stored={stored} duplicated={duplicated} retries={stats['retries']} "
          f"spooled={stats['spooled']} replayed={stats['replayed']} faults_left={left} "
          f"resent={resent}")  # fmt: skip
    return emit(
        "storms", sent=sent, stored=stored, duplicated=duplicated, dropped=stats["dropped"],
        spooled=stats["spooled"], ok=drained and left == 0 and stats["retries"] > 0,
        notes=f"{stats['retries']} retries, {stats['replayed']} replayed",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run against a fresh server in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--records", type=int, default=2000, help="records per round")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="storms-"))
    try:
        return run(tmp, args.rounds, args.records)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
