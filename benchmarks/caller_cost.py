"""What ``log_prompt`` costs its caller, against the floor of doing the bare work.

Times each call with ``perf_counter_ns`` (timer overhead subtracted), for a
1.2 KB record (input and output 500 characters, 5 metadata keys), with
nothing sending in the background. The floors:

* ``floor``: build a msgspec Struct, MessagePack-encode it, ``deque.append``;
* ``floor_id_ts``: the same plus a fresh id (IdSource) and ``time.time()``,
  which any identifiable record needs.

Run: ``python -m benchmarks.caller_cost`` -> benchmarks/results/caller_cost.json
"""

from __future__ import annotations

import collections
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import banyan
from banyan._record import IdSource, Record, encode

ROUNDS = 40
CALLS = 2_000
INPUT = "x" * 500
OUTPUT = "y" * 500
METADATA = {"user_type": "new", "plan": "pro", "turn": 3, "score": 4.5, "cached": True}
OUT = Path(__file__).parent / "results" / "caller_cost.json"


def _workloads() -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    sink: collections.deque[bytes] = collections.deque()
    ids = IdSource()
    logger = banyan.PromptStackLogger(
        api_key="psk_bench", base_url="http://127.0.0.1:9", max_queue_bytes=1 << 40,
        batch_size=1 << 40, flush_interval=3600,
    )  # fmt: skip
    # Keep the flusher from starting: this measures the caller's cost only.
    logger._idle = False
    prompt = banyan.PromptData(content="c", version="3", prompt_id="p1", name="bench")
    banyan._default._logger = logger

    def floor() -> None:
        sink.append(encode(Record("id-1", 1.0, INPUT, OUTPUT, "p1", "bench", "3", "main",
                                  "gpt-4", METADATA, 12.0)))  # fmt: skip

    def floor_id_ts() -> None:
        sink.append(encode(Record(ids.next(), time.time(), INPUT, OUTPUT, "p1", "bench", "3",
                                  "main", "gpt-4", METADATA, 12.0)))  # fmt: skip

    def method() -> None:
        logger.log_prompt(input=INPUT, output=OUTPUT, prompt_data=prompt, model="gpt-4",
                          metadata=METADATA, duration_ms=12.0)  # fmt: skip

    def module() -> None:
        banyan.log_prompt(input=INPUT, output=OUTPUT, prompt_data=prompt, model="gpt-4",
                          metadata=METADATA, duration_ms=12.0)  # fmt: skip

    def reset() -> None:
        sink.clear()
        logger._flusher.ring.take(1 << 40, 1 << 60)

    work = {
        "floor": floor,
        "floor_id_ts": floor_id_ts,
        "log_prompt": method,
        "banyan.log_prompt": module,
    }
    return work, reset


def _timer_overhead() -> int:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(20_000):
        start = clock()
        samples.append(clock() - start)
    return int(statistics.median(samples))


def measure() -> dict[str, object]:
    """Per-call ns (median, p99) for each workload, rounds interleaved."""
    work, reset = _workloads()
    clock = time.perf_counter_ns
    overhead = _timer_overhead()
    samples: dict[str, list[int]] = {name: [] for name in work}
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for name, fn in work.items():
                reset()
                out = samples[name]
                for _ in range(CALLS):
                    start = clock()
                    fn()
                    out.append(clock() - start - overhead)
    finally:
        gc.enable()
    result: dict[str, object] = {}
    for name, values in samples.items():
        values.sort()
        result[name] = {
            "median_ns": values[len(values) // 2],
            "p99_ns": values[int(len(values) * 0.99)],
            "calls": len(values),
        }
    floor = result["floor"]["median_ns"]  # type: ignore[index]
    floor_id = result["floor_id_ts"]["median_ns"]  # type: ignore[index]
    for name in ("log_prompt", "banyan.log_prompt"):
        median = result[name]["median_ns"]  # type: ignore[index]
        result[name]["x_floor"] = round(median / floor, 2)  # type: ignore[index]
        result[name]["x_floor_id_ts"] = round(median / floor_id, 2)  # type: ignore[index]
    return result


def main() -> None:
    """Run the benchmark and write its JSON."""
    result = {
        "benchmark": "caller_cost",
        "record_bytes": 1180,
        "timer_overhead_ns": _timer_overhead(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "results": measure(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["results"], indent=2))


if __name__ == "__main__":
    main()
