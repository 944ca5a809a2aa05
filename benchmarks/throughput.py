"""Records per second delivered *and persisted* into a real ``banyan serve``, one process.

Starts the reference server as a subprocess, logs N records (1.2 KB each by
default) with default client settings, once over HTTP/2 and once over
HTTP/1.1, and times from the first log_prompt until the server reports every
record stored. The producer pauses while the ring is nearly full, so nothing
is dropped. Also times the server alone (one client, pre-encoded batches) as
the ceiling the client can reach. Then the released banyan-sdk 1.0.1, in its
venv (benchmarks/_compat.py), with its default settings against the same
server: one ``POST /api/logs/prompt-usage`` per record from its background
thread; its producer waits while the 1,000-record queue is full, and stops at
5,000 records or 20 s (at a multiple of its batch_size of 10, so that no
partial batch waits for its 5 s flush interval). Every count is the server's:
``GET /api/v2/logs/summary`` before and after each run.

Compression: the HTTP/2 case again with ``compression="gzip"`` and
``compression="zstd"`` (N/2 records each; the uncompressed case is the HTTP/2
run above). Every 2.x case records ``bytes_sent`` from ``get_stats()`` (batch
bodies as sent, after compression) and ``wire_bytes_per_record``. Every record
carries the same 1.2 KB of repeated characters, so the compressed sizes are a
lower bound, far below what real prompts and outputs compress to.

With ``--baseline REF``, the HTTP/2 and HTTP/1.1 client runs are then
repeated in alternating turns with the same ``client_run`` importing the
``banyan`` of git ``REF`` in a subprocess (benchmarks/_compat.py's
``baseline_tree``), against the same server; ``baseline`` holds each turn's
records/s and the median paired ratio (this tree over the ref).

Run: ``python -m benchmarks.throughput [N] [--baseline REF]``
-> benchmarks/results/throughput.json, .png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import banyan
from banyan import _localserver
from banyan._record import IdSource, Record, encode
from banyan._wire import BATCH_PATH, MSGPACK, msgpack_array_header
from benchmarks._compat import baseline_tree, run_module, run_script
from benchmarks._plot import RESULTS, bars, write_json

KEY = "psk_bench_0123456789abcdef"
V101_RECORDS, V101_SECONDS = 5_000, 20.0
#: Alternating turns of this tree and the baseline ref, per protocol.
TURNS = 3
INPUT, OUTPUT = "x" * 500, "y" * 500
METADATA = {"user_type": "new", "plan": "pro", "turn": 3, "score": 4.5, "cached": True}


_pollers: dict[str, httpx.Client] = {}


def _stored(url: str) -> int:
    # One client per server, made outside any timed span: a new httpx client costs ~50 ms
    # of CPU (its TLS context), which the polling loop of a timed run would otherwise pay.
    client = _pollers.get(url)
    if client is None:
        client = _pollers[url] = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30)
    return int(client.get("/api/v2/logs/summary").json()["stored"])


def client_run(url: str, n: int, http2: bool, compression: str | None = None) -> dict[str, Any]:
    """Log ``n`` records with default settings (but ``compression``); time until all are stored."""
    before = _stored(url)
    logger = banyan.PromptStackLogger(
        api_key=KEY, base_url=url, http2=http2, compression=compression
    )
    # Public API only: the same function times a baseline ref's banyan (--baseline).
    high = logger.config.max_queue_bytes * 3 // 4
    start = time.perf_counter()
    for i in range(n):
        if i % 1000 == 0:
            while logger.get_stats()["queue_bytes"] > high:
                time.sleep(0.001)
        logger.log_prompt(INPUT, OUTPUT, model="gpt-4", metadata=METADATA, duration_ms=12.0)
    logged = time.perf_counter() - start
    logger.flush(timeout=120)
    while _stored(url) - before < n and time.perf_counter() - start < 120:
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    stats = logger.get_stats()
    logger.shutdown(timeout=10)
    return {
        "http_version": stats["http_version"], "records": n, "seconds": round(elapsed, 3),
        "records_per_s": round(n / elapsed), "log_loop_seconds": round(logged, 3),
        "stored": _stored(url) - before, "verified": _stored(url) - before == n,
        "dropped": stats["logs_dropped"],
        "batches": stats["batches_sent"], "retries": stats["retries"],
        "compression": compression, "bytes_sent": stats["bytes_sent"],
        "wire_bytes_per_record": round(stats["bytes_sent"] / n, 1),
    }  # fmt: skip


def server_ceiling(url: str, n: int, batch: int = 4000) -> dict[str, object]:
    """The server alone: pre-encoded batches posted back to back over HTTP/1.1."""
    ids = IdSource()
    records = [encode(Record(ids.next(), time.time(), INPUT, OUTPUT, model="gpt-4",
                             metadata=METADATA, duration_ms=12.0)) for _ in range(n)]  # fmt: skip
    bodies = [msgpack_array_header(len(records[i : i + batch])) + b"".join(records[i : i + batch])
              for i in range(0, n, batch)]  # fmt: skip
    headers = {"X-API-Key": KEY, "Content-Type": MSGPACK}
    start = time.perf_counter()
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for body in bodies:
            client.post(BATCH_PATH, content=body).raise_for_status()
    elapsed = time.perf_counter() - start
    return {"records": n, "seconds": round(elapsed, 3), "records_per_s": round(n / elapsed)}


V101 = """
import json, sys, time
import requests
import banyan
from banyan import PromptStackLogger

assert banyan.__version__ == "1.0.1", banyan.__file__
url, key, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
INPUT, OUTPUT = "x" * 500, "y" * 500
METADATA = {"user_type": "new", "plan": "pro", "turn": 3, "score": 4.5, "cached": True}

def stored():
    answer = requests.get(f"{url}/api/v2/logs/summary", headers={"X-API-Key": key}, timeout=30)
    return int(answer.json()["stored"])

before = stored()
logger = PromptStackLogger(api_key=key, base_url=url)
start = time.perf_counter()
deadline, hard = start + seconds, start + seconds + 10
logged = refused = 0
while logged < n and time.perf_counter() < hard and (logged % 10 or time.perf_counter() < deadline):
    if logger.log_prompt(INPUT, OUTPUT, model="gpt-4", metadata=METADATA, duration_ms=12):
        logged += 1
    else:
        refused += 1
        time.sleep(0.001)
loop = time.perf_counter() - start
while stored() - before < logged and time.perf_counter() < hard + 20:
    time.sleep(0.02)
elapsed = time.perf_counter() - start
got = stored() - before
stats = logger.get_stats()
logger.shutdown(timeout=10)
print(json.dumps({"records": logged, "seconds": round(elapsed, 3),
                  "records_per_s": round(got / elapsed), "log_loop_seconds": round(loop, 3),
                  "stored": got, "queue_full_waits": refused,
                  "requests_ok": stats["successful_requests"],
                  "requests_failed": stats["failed_requests"]}))
"""


def v101_run(url: str, n: int = V101_RECORDS, seconds: float = V101_SECONDS) -> dict[str, object]:
    """banyan-sdk 1.0.1 with default settings; at most ``n`` records or ``seconds`` of logging."""
    before = _stored(url)
    out: dict[str, object] = run_script(V101, url, KEY, str(n), str(seconds), timeout=120)
    out["verified"] = _stored(url) - before == out["records"] == out["stored"]
    return out


def plot(result: dict[str, Any]) -> None:
    """Records/s per scenario, log scale (1.0.1 is far below the rest)."""

    def wire(case: dict[str, Any]) -> str:
        return f"{case['wire_bytes_per_record']:,.0f} B/record on the wire"

    rows = [(f"2.x, HTTP/2\n{wire(result['http2'])}", "2.x client", result["http2"]),
            ("2.x, HTTP/1.1", "2.x client", result["http1"]),
            (f"2.x, HTTP/2, gzip\n{wire(result['http2_gzip'])}", "2.x client, compressed",
             result["http2_gzip"]),
            (f"2.x, HTTP/2, zstd\n{wire(result['http2_zstd'])}", "2.x client, compressed",
             result["http2_zstd"]),
            ("server alone\n(pre-encoded batches)", "server ceiling", result["server_alone"]),
            ("1.0.1\n(a request per record)", "1.0.1 client", result["v101"])]  # fmt: skip
    bars(RESULTS / "throughput.png", [r[0] for r in rows], [r[2]["records_per_s"] for r in rows],
         groups=[r[1] for r in rows], log=True, ylabel="records persisted per second (log scale)",
         title="One process, default settings (but compression), ~1.2 KB records, "
               "into banyan serve")  # fmt: skip


def paired(url: str, n: int, tree: Path) -> dict[str, Any]:
    """This tree and the baseline's, alternating ``TURNS`` times per protocol; paired ratios."""
    out: dict[str, Any] = {}
    for name, http2 in (("http2", True), ("http1", False)):
        ours: list[int] = []
        base: list[int] = []
        for _ in range(TURNS):
            ours.append(int(client_run(url, n, http2)["records_per_s"]))
            theirs = run_module(tree, "benchmarks.throughput", "--worker", url, str(n), name,
                                timeout=300)  # fmt: skip
            base.append(int(theirs["records_per_s"]))
        ratio = statistics.median(a / b for a, b in zip(ours, base, strict=True))
        out[name] = {"records_per_s": ours, "base_records_per_s": base,
                     "median": statistics.median(ours), "base_median": statistics.median(base),
                     "x_base": round(ratio, 3)}  # fmt: skip
    return out


def main() -> None:
    """Run every scenario against one server and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput")
    parser.add_argument("n", nargs="?", type=int, default=200_000)
    parser.add_argument("--baseline", metavar="REF", help="also time git REF, paired")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        # A baseline turn: this tree's client_run, the ref's banyan (run_module's cwd).
        url, count, protocol = args.worker
        print(json.dumps(client_run(url, int(count), http2=protocol == "http2")))
        return
    n = args.n
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tree = stack.enter_context(baseline_tree(args.baseline)) if args.baseline else None
        server = _localserver.start(Path(tmp), db=Path(tmp) / "bench.db", api_key=KEY)
        url = server.base_url
        try:
            result: dict[str, Any] = {
                "record_bytes": 1180,
                "http2": client_run(url, n, http2=True),
                "http1": client_run(url, n, http2=False),
                "http2_gzip": client_run(url, n // 2, http2=True, compression="gzip"),
                "http2_zstd": client_run(url, n // 2, http2=True, compression="zstd"),
                "server_alone": server_ceiling(url, min(n, 100_000)),
                "v101": v101_run(url),
            }
            if tree is not None:
                result["baseline"] = {"ref": args.baseline, **paired(url, n, tree)}
        finally:
            server.stop()
    path = write_json("throughput", result)
    plot(result)
    for name in ("http2", "http1", "http2_gzip", "http2_zstd", "server_alone", "v101"):
        print(f"{name:13} {result[name]['records_per_s']:8,} records/s  {result[name]}")
    if "baseline" in result:
        print(f"baseline {result['baseline']}")
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
