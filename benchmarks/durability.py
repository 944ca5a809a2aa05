"""Durable vs buffered: what ``log_prompt`` costs its caller, and how fast a spool replays.

Caller cost: ``ROUNDS`` rounds of ``CALLS`` calls per mode, the modes' rounds
interleaved, each call timed with ``perf_counter_ns`` (timer overhead
subtracted), a 1.2 KB record, the flusher running against a live ``banyan
serve`` (so rollovers use the spare segment the flusher prepares, as in
production). Medians and p99 per mode; issue #6's target is durable <= 2x
buffered (median).

Replay: ``REPLAY`` records are spooled with the server unreachable, then one
process replays them (the ``banyan spool replay`` core, on one thread) into
a live server: records per second from the first claim to the last ack.

Run: ``python -m benchmarks.durability`` -> benchmarks/results/durability.json and .png
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import banyan
from banyan import _localserver
from benchmarks._timing import timer_overhead

ROUNDS = 30
CALLS = 2_000
REPLAY = 100_000
INPUT = "x" * 500
OUTPUT = "y" * 500
METADATA = {"user_type": "new", "plan": "pro", "turn": 3, "score": 4.5, "cached": True}
MODES = ("buffered", "durable")
OUT = Path(__file__).parent / "results" / "durability.json"


def caller_cost(
    server: _localserver.LocalServer, spool: Path, overhead: int
) -> dict[str, list[float]]:
    """Per-call cost in ns of each mode, one value per call, the modes' rounds interleaved
    (so that both see the same phases of a machine whose speed drifts)."""
    loggers = {
        mode: banyan.PromptStackLogger(
            server.api_key, server.base_url, durability=mode, spool_dir=str(spool / mode)
        )
        for mode in MODES
    }
    prompt = banyan.PromptData(content="c", version="3", prompt_id="p1", name="bench")
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(ROUNDS):
        for mode, logger in loggers.items():
            log, out = logger.log_prompt, samples[mode]
            gc.disable()
            for _ in range(CALLS):
                t0 = time.perf_counter_ns()
                log(INPUT, OUTPUT, prompt, model="gpt-4", metadata=METADATA, duration_ms=12.0)
                out.append(time.perf_counter_ns() - t0 - overhead)
            gc.enable()
            logger.flush(30)
    for logger in loggers.values():
        logger.shutdown(30)
    return samples


def replay_throughput(server: _localserver.LocalServer, spool: Path) -> dict[str, float]:
    """Spool ``REPLAY`` records with no server, then replay them into ``server``."""
    directory = str(spool / "replay")
    offline = banyan.PromptStackLogger(server.api_key, "http://127.0.0.1:9", durability="durable",
                                       spool_dir=directory, background_thread=False)  # fmt: skip
    for i in range(REPLAY):
        offline.log_prompt(f"replay {i} {INPUT}", OUTPUT, metadata=METADATA)
    offline.shutdown(0)
    replayer = banyan.PromptStackLogger(server.api_key, server.base_url, spool_dir=directory,
                                        background_thread=False)  # fmt: skip
    step = replayer._spooling.replayer.step  # type: ignore[union-attr]
    start = time.perf_counter()
    while step():
        pass
    seconds = time.perf_counter() - start
    replayed = replayer.get_stats()["replayed"]
    replayer.shutdown(5)
    assert replayed == REPLAY, replayed
    return {"records": REPLAY, "seconds": seconds, "records_per_s": REPLAY / seconds}


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ns": statistics.median(ordered), "mean_ns": statistics.fmean(ordered),
            "p99_ns": ordered[int(len(ordered) * 0.99)]}  # fmt: skip


def plot(result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost = result["caller_cost"]
    assert isinstance(cost, dict)
    modes = list(cost)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    medians = [cost[m]["median_ns"] / 1000 for m in modes]
    p99s = [cost[m]["p99_ns"] / 1000 for m in modes]
    xs = range(len(modes))
    ax.bar([x - 0.2 for x in xs], medians, 0.4, label="median")
    ax.bar([x + 0.2 for x in xs], p99s, 0.4, label="p99")
    ax.set_xticks(list(xs), modes)
    ax.set_ylabel("log_prompt cost (us per call)")
    replay = result["replay"]
    assert isinstance(replay, dict)
    ax.set_title(f"durable vs buffered; replay {replay['records_per_s']:,.0f} records/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="durability-"))
    server = _localserver.start(tmp)
    try:
        overhead = timer_overhead()
        cost = {
            mode: summary(values) for mode, values in caller_cost(server, tmp, overhead).items()
        }
        replay = replay_throughput(server, tmp)
    finally:
        server.stop()
    ratio = cost["durable"]["median_ns"] / cost["buffered"]["median_ns"]
    result = {"python": platform.python_version(), "machine": platform.machine(),
              "calls": ROUNDS * CALLS, "caller_cost": cost,
              "durable_over_buffered_median": ratio,
              "target_durable_over_buffered": 2.0, "replay": replay}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, OUT.with_suffix(".png"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
