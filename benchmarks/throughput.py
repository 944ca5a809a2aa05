"""Records per second delivered *and persisted* into a real ``banyan serve``, one process.

Starts the reference server as a subprocess, logs N records (1.2 KB each by
default) with default client settings, once over HTTP/2 and once over
HTTP/1.1, and times from the first log_prompt until the server reports every
record stored. The producer pauses while the ring is nearly full, so nothing
is dropped. Also times the server alone (one client, pre-encoded batches) as
the ceiling the client can reach.

Run: ``python -m benchmarks.throughput [N]`` -> benchmarks/results/throughput.json
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import banyan
from banyan._record import IdSource, Record, encode
from banyan._wire import BATCH_PATH, MSGPACK, msgpack_array_header

KEY = "psk_bench_0123456789abcdef"
OUT = Path(__file__).parent / "results" / "throughput.json"
INPUT, OUTPUT = "x" * 500, "y" * 500
METADATA = {"user_type": "new", "plan": "pro", "turn": 3, "score": 4.5, "cached": True}


def _serve(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "banyan", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--db", str(tmp / "bench.db"), "--api-key", KEY]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).is_success:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("banyan serve did not start")


def _stored(url: str) -> int:
    response = httpx.get(f"{url}/api/v2/logs/summary", headers={"X-API-Key": KEY}, timeout=30)
    return int(response.json()["stored"])


def client_run(url: str, n: int, http2: bool) -> dict[str, object]:
    """Log ``n`` records with default settings; time until all are stored."""
    before = _stored(url)
    logger = banyan.PromptStackLogger(api_key=KEY, base_url=url, http2=http2)
    ring = logger._flusher.ring
    high = ring.max_bytes * 3 // 4
    start = time.perf_counter()
    for i in range(n):
        if i % 1000 == 0:
            while ring.bytes > high:
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
        "stored": _stored(url) - before, "dropped": stats["logs_dropped"],
        "batches": stats["batches_sent"], "retries": stats["retries"],
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


def main() -> None:
    """Run every scenario against one server and write the JSON."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _serve(Path(tmp))
        try:
            result = {
                "benchmark": "throughput", "record_bytes": 1180, "cpus": os.cpu_count(),
                "http2": client_run(url, n, http2=True),
                "http1": client_run(url, n, http2=False),
                "server_alone": server_ceiling(url, min(n, 100_000)),
            }  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(30)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
