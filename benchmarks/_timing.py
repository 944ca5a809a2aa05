"""What reading the clock twice costs, subtracted from every per-call sample.

Stdlib only: caller_cost ships this function's source to the 1.0.1 virtualenv.
"""

from __future__ import annotations

import statistics
import time


def timer_overhead() -> int:
    """Median ns between two back-to-back ``perf_counter_ns`` calls."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(20_000):
        start = clock()
        samples.append(clock() - start)
    return int(statistics.median(samples))
