"""Stalled connections: requests that are accepted and never answered, under load.

A fault proxy (``tests/faultproxy.py``) in front of a real ``banyan serve``
on 127.0.0.1 stalls chosen batch requests: it reads the request and never
answers. ``--rounds`` times a few single stalls are queued and ``--records``
records logged behind them; the logger's 0.5 s timeout must drop the
connection and retry on a new one. Then, for ``--blackout`` seconds, every
request stalls while logging goes on: retries run out, batches go to the
spool, and once requests flow again the spool is replayed. Nothing may be
lost or stored twice.

Run: ``python -m stress.stalls [--rounds 6] [--records 1500] [--blackout 4]``
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

from faultproxy import Fault, FaultProxy, running  # noqa: E402

import banyan  # noqa: E402
from banyan import _localserver  # noqa: E402
from banyan._wire import BATCH_PATH  # noqa: E402


def log_round(logger: banyan.PromptStackLogger, name: str, records: int) -> int:
    """Log ``records`` paced records; how many were accepted."""
    sent = 0
    for i in range(records):
        sent += logger.log_prompt(f"{name} {i}", "o" * 200)
        if i % 100 == 0:
            time.sleep(0.01)
    return sent


def stall(proxy: FaultProxy, logger: banyan.PromptStackLogger, rounds: int, records: int) -> int:
    """Single stalls per round, flushed through; the records accepted."""
    sent = 0
    for r in range(rounds):
        proxy.push("stall", times=1 + r % 3, path=BATCH_PATH)
        sent += log_round(logger, f"stall {r}", records)
        logger.flush(30)
    return sent


def blackout(
    proxy: FaultProxy, logger: banyan.PromptStackLogger, seconds: float, records: int
) -> int:
    """Every request stalls for ``seconds`` while logging goes on; the records accepted."""
    proxy.always.append(Fault("stall"))
    sent, n, until = 0, 0, time.monotonic() + seconds
    try:
        while time.monotonic() < until and n < 100:
            sent += log_round(logger, f"blackout {n}", records // 10)
            n += 1
            time.sleep(0.1)
    finally:
        proxy.always.clear()
    return sent


def run(tmp: Path, rounds: int, records: int, seconds: float) -> int:
    """The scenario; the exit status."""
    server = _localserver.start(tmp)
    try:
        with running(server.base_url) as proxy:
            logger = banyan.PromptStackLogger(
                server.api_key, proxy.url, http2=False, timeout=0.5, retry_delay=0.05,
                max_retry_delay=0.5, max_retries=2, flush_interval=0.05, batch_size=250,
                spool_dir=str(tmp / "spool"),
            )  # fmt: skip
            try:
                sent = stall(proxy, logger, rounds, records)
                sent += blackout(proxy, logger, seconds, records)
                sent += log_round(logger, "after", records)
                drained = drain(logger, 60)
                stats = logger.get_stats()
            finally:
                logger.shutdown(10)
        stored, duplicated = stored_once(server.stored_ids())
    finally:
        server.stop()
    print(f"sent={sent} stored={stored} duplicated={duplicated} retries={stats['retries']} "
          f"spooled={stats['spooled']} replayed={stats['replayed']}")  # fmt: skip
    return emit(
        "stalls", sent=sent, stored=stored, duplicated=duplicated, dropped=stats["dropped"],
        spooled=stats["spooled"], ok=drained and stats["retries"] > 0 and stats["spooled"] > 0,
        notes=f"{stats['retries']} retries, {stats['replayed']} replayed",
    )  # fmt: skip


def main() -> int:
    """Parse the arguments and run against a fresh server in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--records", type=int, default=1500, help="records per round")
    parser.add_argument("--blackout", type=float, default=4.0, help="seconds of total stall")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stalls-"))
    try:
        return run(tmp, args.rounds, args.records, args.blackout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
