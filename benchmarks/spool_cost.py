"""What a disk spool append costs its caller, and how fast a spool replays.

Times each ``Spool.append`` of a 1.2 KB record with ``perf_counter_ns``
(timer overhead subtracted), in a temporary directory on the disk holding
``$BANYAN_BENCH_DIR`` (default ``/var/tmp``):

* ``none_prepared``: ``sync="none"``, with a thread calling ``prepare()`` when
  ``wake`` fires, as the flusher will: rollovers find a spare segment;
* ``none_unprepared``: ``sync="none"``, each rollover allocates in ``append``;
* ``always``: ``sync="always"``, an msync before each append returns;
* ``crc_floor``: the frame's ``zlib.crc32`` alone.

Appends are paced (a 1 ms pause every 200 records, ~1 M records/s peak) so
that the kernel's dirty-page writeback is not what is measured. Replay:
claim, read and ack ``REPLAY`` records, in records/s.

Run: ``python -m benchmarks.spool_cost`` -> benchmarks/results/spool_cost.json
"""

from __future__ import annotations

import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from banyan._segment import frame_crc
from banyan._spool import Spool
from benchmarks._timing import timer_overhead

RECORD = b"r" * 1200
CALLS = 60_000
ALWAYS_CALLS = 2_000
REPLAY = 100_000
OUT = Path(__file__).parent / "results" / "spool_cost.json"


def _summary(values: list[int]) -> dict[str, float]:
    values.sort()
    return {
        "median_ns": values[len(values) // 2],
        "p99_ns": values[int(len(values) * 0.99)],
        "max_ns": values[-1],
        "mean_ns": round(sum(values) / len(values)),
        "calls": len(values),
    }


def _time(fn: Callable[[], object], calls: int, overhead: int) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    gc.disable()
    try:
        for i in range(calls):
            start = clock()
            fn()
            out.append(clock() - start - overhead)
            if i % 200 == 199:
                time.sleep(0.001)
    finally:
        gc.enable()
    return out


def _appends(root: Path, sync: str, calls: int, prepared: bool, overhead: int) -> list[int]:
    wanted = threading.Event()
    done = threading.Event()
    spool = Spool(
        root / f"{sync}-{prepared}", sync=sync, max_total_bytes=1 << 40,  # type: ignore[arg-type]
        wake=wanted.set if prepared else None,
    )  # fmt: skip

    def preparer() -> None:
        while not done.is_set():
            if wanted.wait(0.05):
                wanted.clear()
                spool.prepare()

    thread = threading.Thread(target=preparer, daemon=True)
    if prepared:
        spool.prepare()
        thread.start()
    try:
        samples = _time(lambda: spool.append(RECORD), calls, overhead)
        assert spool.spooled == calls, spool.dropped
    finally:
        done.set()
        if prepared:
            thread.join()
        spool.close()
        spool.purge()
    return samples


def _replay(root: Path) -> dict[str, float]:
    spool = Spool(root / "replay", max_total_bytes=1 << 40)
    for _ in range(REPLAY):
        spool.append(RECORD)
    spool.seal()
    records = 0
    start = time.perf_counter()
    while (segment := spool.claim()) is not None:
        for _ in segment.records():
            records += 1
        spool.ack(segment)
    elapsed = time.perf_counter() - start
    spool.close()
    assert records == REPLAY
    return {
        "records": records,
        "seconds": round(elapsed, 4),
        "records_per_s": round(records / elapsed),
        "mb_per_s": round(records * len(RECORD) / elapsed / 1e6, 1),
    }


def measure(root: Path) -> dict[str, object]:
    """Per-append ns for each mode, and replay throughput."""
    overhead = timer_overhead()
    return {
        "crc_floor": _summary(_time(lambda: frame_crc(RECORD, 1200), CALLS, overhead)),
        "none_prepared": _summary(_appends(root, "none", CALLS, True, overhead)),
        "none_unprepared": _summary(_appends(root, "none", CALLS, False, overhead)),
        "always": _summary(_appends(root, "always", ALWAYS_CALLS, False, overhead)),
        "replay": _replay(root),
    }


def main() -> None:
    """Run the benchmark and write its JSON."""
    base = os.environ.get("BANYAN_BENCH_DIR", "/var/tmp")
    root = Path(tempfile.mkdtemp(prefix="banyan-spool-bench-", dir=base))
    try:
        results = measure(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "spool_cost",
        "record_bytes": len(RECORD),
        "segment_bytes": 4 << 20,
        "directory": base,
        "timer_overhead_ns": timer_overhead(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "results": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["results"], indent=2))


if __name__ == "__main__":
    main()
