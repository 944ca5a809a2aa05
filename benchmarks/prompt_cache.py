"""What a cached ``get_prompt`` costs, routing included, next to banyan-sdk 1.0.1.

One run against one local ``banyan serve`` (fresh database, prompt ``bench``
and prompts ``bench-exp`` and ``bench-new``, each with a running 50/30/20
experiment; new sticky values go to ``bench-new``, so that they never empty
the routing memo that the seen values hit):

* 2.x ``get_prompt`` cache hit, no experiment;
* 2.x cache hit routed, sticky value seen before (the routing memo answers);
* 2.x cache hit routed, a new sticky value on every call (one sha256);
* 2.x ``experiment()`` (the 1.0.1 call: one round trip to the route endpoint);
* 1.0.1 cached ``get_prompt`` and 1.0.1 ``experiment()``, timed by the same
  loop in a subprocess of a venv with ``banyan-sdk==1.0.1`` from PyPI
  (benchmarks/_compat.py).

Each call is timed with ``perf_counter_ns`` (timer overhead subtracted), GC
off, rounds interleaved. Writes benchmarks/results/prompt_cache.json and .png.

Run: ``python -m benchmarks.prompt_cache``
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from banyan import _localserver
from benchmarks._compat import run_script
from benchmarks._timing import timer_overhead

KEY = "psk_bench_prompt_cache_0001"
RESULTS = Path(__file__).parent / "results"
ROUNDS = 20
CALLS = 2_000
REMOTE_CALLS = 50

Work = dict[str, tuple[Callable[[int], object], int]]


def measure(work: Work, rounds: int, calls: int) -> dict[str, Any]:
    """Median and p99 ns per call of each workload (0 calls: ``calls``), rounds interleaved.

    Runs in this process and, as source, in the 1.0.1 subprocess: stdlib only.
    """
    clock, overhead = time.perf_counter_ns, timer_overhead()
    samples: dict[str, list[int]] = {name: [] for name in work}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, (fn, n) in work.items():
                out = samples[name]
                for i in range(n or calls):
                    start = clock()
                    fn(i)
                    out.append(clock() - start - overhead)
    finally:
        gc.enable()
    result: dict[str, Any] = {}
    for name, values in samples.items():
        values.sort()
        result[name] = {
            "median_ns": values[len(values) // 2],
            "p99_ns": values[int(len(values) * 0.99)],
            "calls": len(values),
        }
    return result


V101 = """
import banyan
from banyan import PromptStackLogger
assert banyan.__version__ == "1.0.1", banyan.__file__
base_url, key, experiment_id, rounds, calls, remote = sys.argv[1:7]
logger = PromptStackLogger(api_key=key, base_url=base_url)
assert logger.get_prompt("bench") is not None
logger.experiment(experiment_id, "user_id", "user-0")
fresh = iter(range(10**9))
work = {
    "1.0.1 get_prompt (cached)": (lambda i: logger.get_prompt("bench"), 0),
    "1.0.1 experiment() (same id: 1.0.1's own cache)": (
        lambda i: logger.experiment(experiment_id, "user_id", "user-0"), 0),
    "1.0.1 experiment() (new id: server-routed)": (
        lambda i: logger.experiment(experiment_id, "user_id", f"new-{next(fresh)}"),
        int(remote)),
}
print(json.dumps(measure(work, int(rounds), int(calls))))
logger.shutdown(timeout=5)
"""


def seed(url: str) -> str:
    """Create the prompts and the running experiment; returns the experiment id."""
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as http:
        for name in ("bench", "bench-exp", "bench-new"):
            http.post("/api/v2/prompts", json={"name": name, "content": "A " * 200})
            for content in ("B " * 200, "C " * 200):
                http.post(f"/api/v2/prompts/{name}/versions", json={"content": content})
        variants = [{"version": v, "percentage": p} for v, p in (("1", 50), ("2", 30), ("3", 20))]
        ids = []
        # The same experiment on two prompts: new values fill (and empty) their own memo,
        # so that the seen-value workload measures memo hits only.
        for name in ("bench-exp", "bench-new"):
            response = http.post("/api/v2/experiments", json={"prompt": name, "variants": variants})
            response.raise_for_status()
            ids.append(str(response.json()["id"]))
        return ids[0]


def ours(url: str, experiment_id: str, cache_dir: str) -> dict[str, Any]:
    """Time the 2.x calls in this process with the same loop the 1.0.1 script uses."""
    import banyan

    logger = banyan.PromptStackLogger(api_key=KEY, base_url=url, cache_dir=cache_dir)
    get = logger.get_prompt
    assert get("bench") is not None
    seen = [{"user_id": f"user-{i}"} for i in range(1000)]
    fresh = [{"user_id": f"new-{i}"} for i in range(ROUNDS * CALLS)]
    counter, remote = iter(range(10**9)), iter(range(10**9))
    for context in seen:
        get("bench-exp", sticky_context=context)
    get("bench-new", sticky_context=seen[0])
    work: Work = {
        "get_prompt hit": (lambda i: get("bench"), 0),
        "get_prompt hit + routing (seen id)": (
            lambda i: get("bench-exp", sticky_context=seen[i % 1000]), 0),
        "get_prompt hit + routing (new id)": (
            lambda i: get("bench-new", sticky_context=fresh[next(counter)]), 0),
        "experiment() (new id: server-routed)": (
            lambda i: logger.experiment(experiment_id, "user_id", f"r-{next(remote)}"),
            REMOTE_CALLS),
    }  # fmt: skip
    result = measure(work, ROUNDS, CALLS)
    result["_cache_stats"] = logger.get_stats()["prompt_cache"]
    logger.shutdown(timeout=5)
    return result


def plot(results: dict[str, Any], path: Path) -> None:
    """Horizontal bars of the median cost per call (log scale), p99 as a whisker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if not n.startswith("_")]
    medians = [results[n]["median_ns"] / 1000 for n in names]
    p99 = [results[n]["p99_ns"] / 1000 for n in names]
    colors = ["#c0504d" if n.startswith("1.0.1") else "#2a7ab9" for n in names]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    upper = [max(0.0, p - m) for p, m in zip(p99, medians, strict=True)]
    ax.barh(names, medians, color=colors, xerr=[[0] * len(names), upper])
    ax.set_xscale("log")
    ax.set_xlabel("µs per call (median, whisker to p99), log scale")
    ax.set_title("Cost per call: 2.x (blue) vs banyan-sdk 1.0.1 (red), local server")
    for y, value in enumerate(medians):
        ax.text(value, y, f" {value:.2f} µs", va="center", fontsize=8)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def measure_101(url: str, experiment_id: str) -> dict[str, Any]:
    """The 1.0.1 calls, timed by :func:`measure` in the 1.0.1 venv against the same server."""
    head = "from __future__ import annotations\nimport gc, json, statistics, sys, time\n"
    source = "\n\n".join([head, inspect.getsource(timer_overhead), inspect.getsource(measure),
                          V101])  # fmt: skip
    args = (url, KEY, experiment_id, str(ROUNDS), str(CALLS), str(REMOTE_CALLS))
    out: dict[str, Any] = run_script(source, *args, timeout=600)
    return out


def main() -> None:
    """Run the benchmark; write JSON and PNG."""
    with tempfile.TemporaryDirectory() as tmp:
        server = _localserver.start(Path(tmp), db=Path(tmp) / "bench.db", api_key=KEY)
        url = server.base_url
        try:
            experiment_id = seed(url)
            results = ours(url, experiment_id, tmp)
            results.update(measure_101(url, experiment_id))
        finally:
            server.stop()
    report = {
        "benchmark": "prompt_cache",
        "target_median_ns": 2000,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "rounds": ROUNDS,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "prompt_cache.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(results, out.with_suffix(".png"))
    for name, row in results.items():
        if not name.startswith("_"):
            print(f"{name:40s} median {row['median_ns'] / 1000:10.2f} µs  "
                  f"p99 {row['p99_ns'] / 1000:10.2f} µs")  # fmt: skip
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
