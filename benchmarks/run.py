"""Run the whole benchmark suite: ``python -m benchmarks.run [NAME ...]``.

Each benchmark runs in its own process (so one's threads and memory do not
colour the next) and writes JSON, and a PNG where it plots, into
benchmarks/results/. Every benchmark starts the servers it needs on
127.0.0.1 and is bounded in time.
"""

from __future__ import annotations

import subprocess
import sys
import time

SUITE = (
    "caller_cost",
    "throughput",
    "memory",
    "server_ingest",
    "prompt_cache",
    "processes",
    "spool_cost",
    "durability",
    "legacy_throughput",
)


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default); non-zero if any failed."""
    names = argv or list(SUITE)
    unknown = sorted(set(names) - set(SUITE))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(SUITE)}")
        return 2
    failed = []
    for name in names:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        print(f"== {name}: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
