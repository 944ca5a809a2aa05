"""What ``log_prompt`` costs its caller, against the floor of the bare work and against 1.0.1.

Times each call with ``perf_counter_ns`` (timer overhead subtracted, GC off,
rounds of 2,000 calls interleaved across workloads; the 40 rounds are run in
8 turns alternating a fresh process of this tree and the 1.0.1 one, so that
drifting machine noise hits both alike; samples are pooled), for a ~1.2 KB record
(input and output 500 characters, 5 metadata keys, a prompt), with nothing
sending in the background. The workloads:

* ``floor``: build a msgspec Struct, MessagePack-encode it, ``deque.append``;
* ``floor_id_ts``: the same plus a fresh id (IdSource) and ``time.time()``,
  which any identifiable record needs;
* ``floor_call``: the same again inside a function with ``log_prompt``'s
  signature, called with the same keywords: what any function of this API
  pays before doing anything of its own;
* ``log_prompt`` and ``banyan.log_prompt``: this package (flusher kept from
  starting, base URL a closed loopback port);
* ``log_prompt+before_send`` and ``log_prompt+redact_pii``: the same with a
  ``before_send`` hook that returns the event as is, and with the built-in
  ``banyan.redact_pii`` (every redactor; the record has nothing to redact);
* ``log_prompt+usage``: the same call with ``usage=`` (the OpenAI SDK's
  ``CompletionUsage`` with a cached count; an object of that shape where the
  SDK is not installed) and ``cost=`` (#18);
* ``log_score``: a boolean score attributed to an experiment subject (#18);
* ``1.0.1 log_prompt`` and ``1.0.1 banyan.log_prompt``: the released
  banyan-sdk 1.0.1, timed by the very same two functions (their source is
  shipped) in a subprocess of its venv (benchmarks/_compat.py). Its logger
  has ``background_thread=False`` (nothing drains or sends), ``max_retries=0``
  and a closed port (the constructor's key check fails at once), and
  ``queue_size`` = one round's calls, a bounded queue like its default of
  1,000, emptied before every round so that no call meets a full queue.

Ratios (``x_floor`` and the like) are paired: the median, over the 8 turns,
of one workload's median over the other's in the same turn, since the VM's
speed drifts between turns.

With ``--baseline REF`` a third process takes turns too: the same 2.x
workloads run against the ``banyan`` of git ``REF`` (benchmarks/_compat.py's
``baseline_tree``), reported as ``base <workload>`` rows; each 2.x row gets
``x_base``, its paired ratio over the baseline's (a hook the ref does not
have is left out, and so are outcomes it does not take).

Run: ``python -m benchmarks.caller_cost [--baseline REF] [--rounds N] [--chunks N]``
-> benchmarks/results/caller_cost.json, .png
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import inspect
import json
import statistics
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import banyan
from banyan._record import IdSource, Record, encode
from benchmarks._compat import BENCHMARKS, baseline_tree, closed_url, run_module, run_script
from benchmarks._plot import RESULTS, bars, write_json
from benchmarks._timing import timer_overhead

ROUNDS = 40
CALLS = 2_000
# Rounds are split into turns alternating this process and the 1.0.1 one: machine noise drifts.
CHUNKS = 8
INPUT = "x" * 500
OUTPUT = "y" * 500
METADATA = {"user_type": "new", "plan": "pro", "turn": 3, "score": 4.5, "cached": True}
Work = dict[str, Callable[[], object]]


def _measure(work: Work, reset: Callable[[], None], rounds: int, calls: int) -> dict[str, Any]:
    """Per-call ns samples of each workload, timer overhead subtracted.

    Runs in this process and, as source, in the 1.0.1 subprocess: stdlib only.
    """
    clock = time.perf_counter_ns
    overhead = timer_overhead()
    samples: dict[str, list[int]] = {name: [] for name in work}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in work.items():
                reset()
                out = samples[name]
                for _ in range(calls):
                    start = clock()
                    fn()
                    out.append(clock() - start - overhead)
    finally:
        gc.enable()
    return {"timer_overhead_ns": overhead, "samples": samples}


V101 = """
import logging
import banyan
from banyan import PromptData, PromptStackLogger

assert banyan.__version__ == "1.0.1", banyan.__file__
# The constructor's one key check fails at once against the closed port; keep it quiet.
logging.getLogger("banyan").setLevel(logging.CRITICAL)
url, rounds, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
INPUT, OUTPUT = "x" * 500, "y" * 500
METADATA = {"user_type": "new", "plan": "pro", "turn": 3, "score": 4.5, "cached": True}
options = dict(base_url=url, max_retries=0, background_thread=False, queue_size=calls)
logger = PromptStackLogger(api_key="psk_bench", **options)
banyan.configure(api_key="psk_bench", **options)
prompt = PromptData(prompt_id="p1", name="bench", content="c", version="3", branch="main",
                    project="", enable_logging=True)
queues = (logger.log_queue, banyan.sdk._global_logger.log_queue)

def method():
    logger.log_prompt(input=INPUT, output=OUTPUT, prompt_data=prompt, model="gpt-4",
                      metadata=METADATA, duration_ms=12.0)

def module():
    banyan.log_prompt(input=INPUT, output=OUTPUT, prompt_data=prompt, model="gpt-4",
                      metadata=METADATA, duration_ms=12.0)

def reset():
    for queue in queues:
        queue.queue.clear()

work = {"1.0.1 log_prompt": method, "1.0.1 banyan.log_prompt": module}
out = _measure(work, reset, rounds, calls)
# Every call of the last round was queued (a refused put would be cheaper).
assert queues[1].qsize() == calls, queues[1].qsize()
print(json.dumps(out))
"""


def _workloads() -> tuple[Work, Callable[[], None]]:
    sink: collections.deque[bytes] = collections.deque()
    ids = IdSource()
    logger = banyan.PromptStackLogger(
        api_key="psk_bench", base_url=closed_url(), max_queue_bytes=1 << 40,
        batch_size=1 << 40, flush_interval=3600, spool_dir=False,
    )  # fmt: skip
    hooked = {}
    hooks = {"before_send": lambda event: event, "redact_pii": getattr(banyan, "redact_pii", None)}
    for name, hook in hooks.items():
        if hook is None:
            continue
        with contextlib.suppress(TypeError, banyan.ConfigurationError):
            # A baseline ref from before the hook (059eb3d, #16) leaves its workload out.
            hooked[name] = banyan.PromptStackLogger(
                api_key="psk_bench", base_url=closed_url(), max_queue_bytes=1 << 40,
                batch_size=1 << 40, flush_interval=3600, spool_dir=False, before_send=hook,
            )  # fmt: skip
    # Keep the flushers from starting: this measures the caller's cost only.
    for each in (logger, *hooked.values()):
        _hold(each)
    prompt = banyan.PromptData(content="c", version="3", prompt_id="p1", name="bench")
    banyan._default._logger = logger

    def floor() -> None:
        sink.append(encode(Record("id-1", 1.0, INPUT, OUTPUT, "p1", "bench", "3", "main",
                                  "gpt-4", METADATA, 12.0)))  # fmt: skip

    def floor_id_ts() -> None:
        sink.append(encode(Record(ids.next(), time.time(), INPUT, OUTPUT, "p1", "bench", "3",
                                  "main", "gpt-4", METADATA, 12.0)))  # fmt: skip

    def shaped(  # noqa: PLR0917 - log_prompt's signature
        input: str,
        output: str,
        prompt_data: object = None,
        prompt_id: str | None = None,
        prompt_name: str | None = None,
        version: str | None = None,
        branch_name: str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        duration_ms: float | None = None,
        blocking: bool = False,
    ) -> None:
        sink.append(encode(Record(ids.next(), time.time(), input, output, "p1", "bench", "3",
                                  "main", model, metadata, duration_ms)))  # fmt: skip

    def floor_call() -> None:
        shaped(input=INPUT, output=OUTPUT, prompt_data=prompt, model="gpt-4",
               metadata=METADATA, duration_ms=12.0)  # fmt: skip

    def method() -> None:
        logger.log_prompt(input=INPUT, output=OUTPUT, prompt_data=prompt, model="gpt-4",
                          metadata=METADATA, duration_ms=12.0)  # fmt: skip

    def module() -> None:
        banyan.log_prompt(input=INPUT, output=OUTPUT, prompt_data=prompt, model="gpt-4",
                          metadata=METADATA, duration_ms=12.0)  # fmt: skip

    def hooked_call(name: str) -> Callable[[], object]:
        call = hooked[name].log_prompt
        return lambda: call(input=INPUT, output=OUTPUT, prompt_data=prompt, model="gpt-4",
                            metadata=METADATA, duration_ms=12.0)  # fmt: skip

    subject = banyan.PromptData(content="c", version="3", prompt_id="p1", name="bench",
                                experiment_id="e1", experiment_version_id="v1",
                                sticky_key="user_id", sticky_value="u1")  # fmt: skip
    usage = _openai_usage()

    def with_usage() -> None:
        logger.log_prompt(input=INPUT, output=OUTPUT, prompt_data=prompt, model="gpt-4",
                          metadata=METADATA, duration_ms=12.0, usage=usage,
                          cost=0.0042)  # fmt: skip

    def score() -> None:
        logger.log_score("accepted", True, prompt_data=subject)

    def reset() -> None:
        sink.clear()
        for each in (logger, *hooked.values()):
            _drain(each)

    work: Work = {"floor": floor, "floor_id_ts": floor_id_ts, "floor_call": floor_call,
                  "log_prompt": method, "banyan.log_prompt": module,
                  **{f"log_prompt+{name}": hooked_call(name) for name in hooked}}  # fmt: skip
    # A baseline ref from before #18 has neither.
    if hasattr(logger, "log_score"):
        work |= {"log_prompt+usage": with_usage, "log_score": score}
    return work, reset


def _openai_usage() -> object:
    """An OpenAI Chat Completions usage object (1,200 prompt tokens, 1,024 of them cached)."""
    counts: dict[str, Any] = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                              "prompt_tokens_details": {"cached_tokens": 1024}}  # fmt: skip
    try:
        from openai.types import CompletionUsage
    except ImportError:
        return types.SimpleNamespace(**counts | {
            "prompt_tokens_details": types.SimpleNamespace(cached_tokens=1024)})  # fmt: skip
    return CompletionUsage.model_validate(counts)


def _hold(logger: banyan.PromptStackLogger) -> None:
    """Keep ``logger``'s flusher from starting (private: also a baseline ref's internals)."""
    logger._idle = False


def _drain(logger: banyan.PromptStackLogger) -> None:
    """Empty ``logger``'s queue between rounds, as nothing sends."""
    logger._flusher.ring.take(1 << 40, 1 << 60)


def measure_101(rounds: int = ROUNDS, calls: int = CALLS) -> dict[str, Any]:
    """The 1.0.1 workloads, timed by :func:`_measure` in the 1.0.1 venv."""
    head = "from __future__ import annotations\nimport gc, json, statistics, sys, time\n"
    source = "\n\n".join([head, inspect.getsource(timer_overhead),
                          inspect.getsource(_measure), V101])  # fmt: skip
    out: dict[str, Any] = run_script(source, closed_url(), str(rounds), str(calls), timeout=120)
    return out


def _ratios(results: dict[str, Any]) -> None:
    # Paired by chunk: the machine's speed drifts between chunks (whole chunks run at half
    # speed on the benchmark VM), and a ratio of pooled medians depends on how many slow
    # chunks each workload's pool happens to mix in.
    floors = [name for name in results if name.startswith("floor")]
    for name, row in results.items():
        for floor in floors:
            if not name.startswith("floor") or floors.index(floor) < floors.index(name):
                row[f"x_{floor}"] = _paired_ratio(row, results[floor])
    for name in ("log_prompt", "banyan.log_prompt"):
        theirs = results[f"1.0.1 {name}"]
        theirs["x_2x"] = _paired_ratio(theirs, results[name])
    for name in ("log_prompt+before_send", "log_prompt+redact_pii", "log_prompt+usage"):
        if name in results:
            results[name]["x_log_prompt"] = _paired_ratio(results[name], results["log_prompt"])


def _paired_ratio(row: dict[str, Any], base: dict[str, Any]) -> float:
    """The median over chunks of ``row``'s chunk median over ``base``'s in the same chunk."""
    pairs = zip(row["chunk_medians_ns"], base["chunk_medians_ns"], strict=True)
    return round(statistics.median(a / b for a, b in pairs), 2)


def plot(results: dict[str, Any]) -> None:
    """Median bars with p99 whiskers, one per workload."""
    names = list(results)
    groups = [
        next((g for g in ("floor", "1.0.1", "base") if n.startswith(g)), "2.x") for n in names
    ]
    labels = [n if groups[i] != "2.x" else f"2.x {n}" for i, n in enumerate(names)]
    bars(RESULTS / "caller_cost.png", labels, [results[n]["median_ns"] for n in names],
         markers=[results[n]["p99_ns"] for n in names], groups=groups,
         title="log_prompt caller cost, ~1.2 KB record (bars: median; whiskers: p99)",
         ylabel="ns per call (log scale)", log=True)  # fmt: skip


def run(rounds: int = ROUNDS, chunks: int = CHUNKS, baseline: Path | None = None) -> dict[str, Any]:
    """Every version's samples, pooled over ``chunks`` alternating turns of each process."""
    # Each turn in a fresh process, this tree's as the baseline's: a long-lived process that
    # pools millions of samples ran the very same floor ~4 % slower than a fresh one.
    worker = ("benchmarks.caller_cost", "--worker", str(rounds // chunks), str(CALLS))
    turns: dict[str, Callable[[], dict[str, Any]]] = {
        "2.x": lambda: run_module(BENCHMARKS.parent, *worker),
        "1.0.1": lambda: measure_101(rounds // chunks, CALLS),
    }
    if baseline is not None:
        turns["base"] = lambda: _measure_base(baseline, rounds // chunks, CALLS)
    pooled: dict[str, list[int]] = {}
    chunk_medians: dict[str, list[int]] = {}
    overhead: dict[str, list[int]] = {version: [] for version in turns}
    for _ in range(chunks):
        for version, turn in turns.items():
            out = turn()
            overhead[version].append(out["timer_overhead_ns"])
            for name, values in out["samples"].items():
                pooled.setdefault(name, []).extend(values)
                chunk_medians.setdefault(name, []).append(int(statistics.median(values)))
    results = {name: _summary(values) | {"chunk_medians_ns": chunk_medians[name],
                                         "best_chunk_median_ns": min(chunk_medians[name])}
               for name, values in pooled.items()}  # fmt: skip
    _ratios(results)
    for name, row in results.items():
        if f"base {name}" in results:
            row["x_base"] = _paired_ratio(row, results[f"base {name}"])
    return {"timer_overhead_ns": overhead, "results": results}


def _measure_base(tree: Path, rounds: int, calls: int) -> dict[str, Any]:
    """The 2.x workloads against the baseline tree's ``banyan``, named ``base <workload>``."""
    out: dict[str, Any] = run_module(tree, "benchmarks.caller_cost", "--worker",
                                     str(rounds), str(calls))  # fmt: skip
    out["samples"] = {f"base {name}": values for name, values in out["samples"].items()}
    return out


def _summary(values: list[int]) -> dict[str, int]:
    values.sort()
    return {"median_ns": values[len(values) // 2], "p99_ns": values[int(len(values) * 0.99)],
            "calls": len(values)}  # fmt: skip


def main() -> None:
    """Run every version's workloads and write the JSON and PNG."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.caller_cost")
    parser.add_argument("--baseline", metavar="REF", help="also time git REF, paired")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds of {CALLS} calls")
    parser.add_argument("--chunks", type=int, default=CHUNKS, help="turns the rounds are split in")
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        # A baseline turn: this tree's workloads, the ref's banyan (run_module's cwd).
        work, reset = _workloads()
        print(json.dumps(_measure(work, reset, *args.worker)))
        return
    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(baseline_tree(args.baseline)) if args.baseline else None
        out = run(args.rounds, args.chunks, baseline=tree)
    results = out["results"]
    record = Record("0123456789abcdef-1", time.time(), INPUT, OUTPUT, "p1", "bench", "3", "main",
                    "gpt-4", METADATA, 12.0)  # fmt: skip
    path = write_json("caller_cost", {
        "record_bytes": len(encode(record)), "rounds": args.rounds, "calls_per_round": CALLS,
        "chunks": args.chunks, "timer_overhead_ns": out["timer_overhead_ns"],
        "v101_setup": "background_thread=False, max_retries=0, closed port, "
                      f"queue_size={CALLS} emptied before every round",
        "baseline": args.baseline, "results": results,
    })  # fmt: skip
    plot(results)
    for name, row in results.items():
        base = f"  x_base {row['x_base']}" if "x_base" in row else ""
        print(f"{name:30} median {row['median_ns']:6,} ns  p99 {row['p99_ns']:7,} ns  "
              f"chunk medians {row['chunk_medians_ns']}{base}", flush=True)  # fmt: skip
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
