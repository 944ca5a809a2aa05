"""Records per second into a server that speaks only the 1.0.1 protocol (issue #20).

Starts the minimal 1.0.1-only ASGI app of tests/legacyserver.py under
granian on loopback, once answering at once and once after 50 ms per request,
and times, from the first ``log_prompt`` until the server has stored every
record (its own count, ``GET /_stored``):

- ``serial``: the 2.x client before issue #20, one request at a time (the
  same client with its concurrent sender switched off, over HTTP/1.1: over
  HTTP/2 that client also waited for a ReadTimeout on the batch probe);
- ``concurrent``: the 2.x client with default settings (HTTP/2 asked for; the
  1.0.1 path runs over a pool of HTTP/1.1 connections);
- ``v101``: the released banyan-sdk 1.0.1 in its venv (benchmarks/_compat.py),
  default settings, stopped at ``V101_SECONDS`` of logging (the script of
  ``benchmarks.throughput``).

Each case reports records/s, records lost (logged minus stored ids) and, for
2.x, the client's CPU per record (every thread but the logging one: the
flusher's, in effect; far less sensitive to the machine's load than wall
time), the concurrency limit reached and the possible duplicates counted.

``server_alone`` is what the same server takes from a minimal load generator
(``benchmarks._h1load``, and ``wrk`` when installed) at the client's default
ceiling of requests in flight, in the same run: on a shared machine where
the server alone stays under issue #20's target, ``verdict`` says
``server_limited`` and the client's share of the server-alone figure.

Run: ``python -m benchmarks.legacy_throughput [N]``
-> benchmarks/results/legacy_throughput.json and .png (N scales every case; default 5,000)
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import msgspec

import banyan
from banyan import _localserver
from banyan._config import Config
from banyan._legacybody import legacy_job
from banyan._record import Record
from banyan._transport import Transport
from banyan._wire import SINGLE_LOG_PATH
from benchmarks import throughput
from benchmarks._h1load import server_alone, wrk_rate
from benchmarks._plot import RESULTS, bars, write_json
from benchmarks.throughput import INPUT, KEY, METADATA, OUTPUT
from tests.legacyserver import LegacyServer, start

V101_SECONDS = 15.0
DEFAULT_CEILING = Config.legacy_max_concurrency
#: Records per case: (serial, concurrent, 1.0.1) at each delay; serial and 1.0.1 are slow.
#: At 50 ms the concurrent case takes ~0.7 s to grow its limit from 8 to 100: 10,000 records
#: make the figure mostly the steady state, which a long-running logger lives in.
COUNTS = {0: (1_000, 5_000, 1_000), 50: (200, 10_000, 200)}
#: Issue #20's targets, records/s at each delay.
TARGETS = {0: 10_000, 50: 1_000}


def _stored(server: LegacyServer) -> int:
    return server.count()


def _cpu_seconds() -> tuple[float, float]:
    """User and system CPU time of every thread but this one (the flusher's, in effect)."""
    process = resource.getrusage(resource.RUSAGE_SELF)
    this = resource.getrusage(resource.RUSAGE_THREAD)
    return process.ru_utime - this.ru_utime, process.ru_stime - this.ru_stime


def alone_run(server: LegacyServer, n: int) -> dict[str, Any]:
    """The server alone: ``n`` requests from a minimal generator, as many at once as the
    client's default ceiling allows."""
    record = Record(id="bench-0", ts=0.0, input=INPUT, output=OUTPUT, model="gpt-4",
                    metadata=METADATA, duration_ms=12.0)  # fmt: skip
    job = legacy_job(msgspec.msgpack.encode(record))
    assert job is not None
    body = job.body
    out: dict[str, Any] = server_alone(server.base_url, SINGLE_LOG_PATH, body, n, DEFAULT_CEILING)
    out["wrk_answers_per_s"] = wrk_rate(server.base_url + SINGLE_LOG_PATH, body, DEFAULT_CEILING)
    return out


def client_run(server: LegacyServer, n: int, serial: bool) -> dict[str, Any]:
    """Log ``n`` records with default settings; time until the server stored them all."""
    before = _stored(server)
    fanout = Transport.fanout
    if serial:
        Transport.fanout = lambda self: None  # type: ignore[assignment,method-assign]
    try:
        logger = banyan.PromptStackLogger(
            api_key=KEY, base_url=server.base_url, spool_dir=False, http2=not serial
        )
        start_at, cpu = time.perf_counter(), _cpu_seconds()
        for _ in range(n):
            logger.log_prompt(INPUT, OUTPUT, model="gpt-4", metadata=METADATA, duration_ms=12.0)
        logger.flush(timeout=300)
        while _stored(server) - before < n and time.perf_counter() - start_at < 300:
            time.sleep(0.02)
        elapsed, (user, system) = time.perf_counter() - start_at, _cpu_seconds()
        user, system = user - cpu[0], system - cpu[1]
        stats = logger.get_stats()
        logger.shutdown(timeout=10)
    finally:
        Transport.fanout = fanout  # type: ignore[method-assign]
    stored = _stored(server) - before
    return {"records": n, "seconds": round(elapsed, 3), "records_per_s": round(n / elapsed),
            "client_cpu_us_per_record": round((user + system) / n * 1e6, 1),
            "client_system_share": round(system / (user + system), 2),
            "stored": stored, "lost": n - stats["logs_sent"], "dropped": stats["logs_dropped"],
            "possible_duplicates": stats["possible_duplicates"],
            "concurrency": stats["legacy_concurrency"], "retries": stats["retries"]}  # fmt: skip


def v101_run(server: LegacyServer, n: int) -> dict[str, Any]:
    """banyan-sdk 1.0.1 with default settings; at most ``n`` records or V101_SECONDS of logging."""
    out = throughput.v101_run(server.base_url, n, V101_SECONDS)
    out["lost"] = int(out["records"]) - int(out["stored"])
    return out


def plot(result: dict[str, Any]) -> None:
    """Records/s per client and delay beside what the server takes alone, log scale."""
    names = {"server_alone": "server alone\n(load generator)",
             "serial": "2.x before #20\n(serial)", "v101": "banyan-sdk 1.0.1",
             "concurrent": "2.x, default settings\n(concurrent)"}  # fmt: skip
    rows = [(f"{names[case]}\n{delay} ms", f"{delay} ms per request",
             _rate(result[f"{delay}ms"][case])) for delay in COUNTS for case in names]  # fmt: skip
    bars(RESULTS / "legacy_throughput.png", [r[0] for r in rows], [r[2] for r in rows],
         groups=[r[1] for r in rows], log=True, ylabel="records stored per second (log scale)",
         title="One process into a 1.0.1-only server (a request per record), loopback")  # fmt: skip


def _rate(row: dict[str, Any]) -> int:
    """A case's records/s; for the server alone, the better of the generator and wrk."""
    return int(row.get("records_per_s") or max(row["answers_per_s"], row["wrk_answers_per_s"] or 0))


def verdict(cases: dict[str, Any], target: int) -> dict[str, Any]:
    """Whether the target is out of reach of any client here: the server alone is below it."""
    alone, client = _rate(cases["server_alone"]), _rate(cases["concurrent"])
    return {"target": target, "server_limited": alone < target,
            "client_share_of_server_alone": round(client / alone, 2)}  # fmt: skip


def main() -> None:
    """Every case at 0 ms and 50 ms per request; write the JSON and the plot."""
    scale = float(sys.argv[1]) / 5_000 if len(sys.argv) > 1 else 1.0
    result: dict[str, Any] = {}
    for delay, counts in COUNTS.items():
        serial_n, concurrent_n, v101_n = (max(10, int(c * scale)) for c in counts)
        server = start(_localserver.free_port(), delay_ms=delay)
        try:
            result[f"{delay}ms"] = {
                "server_alone": alone_run(server, concurrent_n),
                "serial": client_run(server, serial_n, serial=True),
                "concurrent": client_run(server, concurrent_n, serial=False),
                "v101": v101_run(server, v101_n),
            }
        finally:
            server.stop()
        result[f"{delay}ms"]["verdict"] = verdict(result[f"{delay}ms"], TARGETS[delay])
        for case, row in result[f"{delay}ms"].items():
            print(f"{delay:3} ms {case:12} {row}")
    path = write_json("legacy_throughput", result)
    plot(result)
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
