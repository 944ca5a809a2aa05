"""Run every bounded stress scenario: ``python -m stress.run [NAME ...]``.

Each scenario is its own script against its own ``banyan serve`` on
127.0.0.1, prints sent / stored / duplicated / dropped (and spooled where it
spools), and exits non-zero on any unaccounted record. This runner prints
each scenario's report, then one line per scenario, and exits non-zero when
any failed.
"""

from __future__ import annotations

import subprocess
import sys
import time

SCENARIOS = ("fork_storm", "outage", "kill9")
#: No scenario may run longer than this (each bounds itself well below it).
LIMIT_S = 600


def run(name: str) -> tuple[int, float]:
    """Run one scenario in its own interpreter; its exit status and duration."""
    started = time.monotonic()
    try:
        code = subprocess.call([sys.executable, "-m", f"stress.{name}"], timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        code = 124
    return code, time.monotonic() - started


def main(argv: list[str]) -> int:
    """Run the named scenarios (all by default) and print the summary."""
    names = argv or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
        return 2
    results = {}
    for name in names:
        print(f"== {name}", flush=True)
        results[name] = run(name)
    print("\nscenario      result   seconds")
    for name, (code, seconds) in results.items():
        print(f"{name:<13} {'ok' if code == 0 else f'FAIL {code}':<8} {seconds:>7.0f}")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
