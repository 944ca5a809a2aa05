"""Records/s the reference server persists, by batch size, over HTTP/1.1 and h2c.

Starts ``banyan serve`` on a free loopback port with a fresh database, posts
pre-encoded MessagePack batches of ~1.2 KB records (500-character input and
output, 5 metadata keys) for a few seconds per case from one client process,
counts what the server reports as stored, and writes
benchmarks/results/server_ingest.json and .png. On Linux each case also
reports the server's CPU time per stored record (user + system time of the
``banyan serve`` process and its worker, all threads). Runs in well under 2
minutes.

    python benchmarks/server_ingest.py [--seconds 4] [--clients 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from banyan import _localserver
from banyan._record import IdSource, Record, encode
from banyan._wire import BATCH_PATH, MSGPACK, msgpack_array_header

KEY = "psk_bench_0123456789abcdef"
RESULTS = Path(__file__).parent / "results"
SIZES = (100, 1_000, 10_000)


def make_batches(size: int, count: int, ids: IdSource) -> list[bytes]:
    """``count`` batch bodies of ``size`` distinct ~1.2 KB records each."""
    text_in, text_out = "q" * 500, "a" * 500
    meta = {"user_id": "u-1", "session": "s-1", "tier": "pro", "region": "eu", "attempt": 1}
    out = []
    for _ in range(count):
        records = [
            encode(Record(id=ids.next(), ts=time.time(), input=text_in, output=text_out,
                          prompt_name="bench", version="1", model="gpt-x",
                          metadata=meta, duration_ms=12.5))
            for _ in range(size)
        ]  # fmt: skip
        out.append(msgpack_array_header(size) + b"".join(records))
    return out


def tree_cpu(pid: int) -> float | None:
    """CPU seconds used so far by process ``pid`` and its descendants (Linux; else None)."""
    proc = Path("/proc")
    try:
        total, pids = 0, [pid]
        while pids:
            task_dir = proc / str(pids.pop()) / "task"
            for task in task_dir.iterdir():
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
                pids += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        return None
    return total / os.sysconf("SC_CLK_TCK")


def run_case(
    server: _localserver.LocalServer, http2: bool, size: int, seconds: float, clients: int
) -> dict[str, Any]:
    """Post batches from ``clients`` threads for ``seconds``; return records/s stored."""
    url, ids = server.base_url, IdSource()
    per_client = max(2, min(400, int(150_000 * seconds / size / clients)))
    bodies = [make_batches(size, per_client, ids) for _ in range(clients)]
    headers = {"X-API-Key": KEY, "Content-Type": MSGPACK}
    stored_before = httpx.get(f"{url}/api/v2/logs/summary", headers=headers).json()["stored"]
    accepted = [0] * clients
    deadline = time.monotonic() + seconds

    def worker(n: int) -> None:
        with httpx.Client(base_url=url, http1=not http2, http2=http2, timeout=60) as client:
            for payload in bodies[n]:
                if time.monotonic() > deadline:
                    return
                response = client.post(BATCH_PATH, content=payload, headers=headers)
                accepted[n] += response.json()["accepted"] if response.status_code == 200 else 0

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    cpu_before = tree_cpu(server.process.pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - started
    time.sleep(0.2)  # the checkpoint of the last batch runs after its answer
    cpu_after = tree_cpu(server.process.pid)
    stored = httpx.get(f"{url}/api/v2/logs/summary", headers=headers).json()["stored"]
    records = stored - stored_before
    cpu = None
    if cpu_before is not None and cpu_after is not None and records:
        cpu = round((cpu_after - cpu_before) / records * 1e6, 1)
    return {
        "protocol": "HTTP/2 (h2c)" if http2 else "HTTP/1.1",
        "batch_size": size,
        "records": stored - stored_before,
        "accepted": sum(accepted),
        "seconds": round(elapsed, 3),
        "records_per_s": round((stored - stored_before) / elapsed),
        "server_cpu_us_per_record": cpu,
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """A grouped bar chart: records/s by batch size, one bar per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = sorted({r["protocol"] for r in results})
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(protocols)
    for i, proto in enumerate(protocols):
        rows = [r for r in results if r["protocol"] == proto]
        xs = [SIZES.index(r["batch_size"]) + i * width for r in rows]
        bars = ax.bar(xs, [r["records_per_s"] for r in rows], width, label=proto)
        ax.bar_label(bars, fmt="{:,.0f}", fontsize=7)
    ax.set_xticks([i + width * (len(protocols) - 1) / 2 for i in range(len(SIZES))])
    ax.set_xticklabels([f"{s:,} / batch" for s in SIZES])
    ax.set_ylabel("records persisted per second")
    ax.set_title("banyan serve: ingest of ~1.2 KB records (one client process)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    """Run every case and write the JSON and PNG results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per case")
    parser.add_argument("--clients", type=int, default=2, help="concurrent connections")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        server = _localserver.start(Path(tmp), db=Path(tmp) / "bench.db", api_key=KEY)
        try:
            for http2 in (False, True):
                for size in SIZES:
                    results.append(run_case(server, http2, size, args.seconds, args.clients))
                    print(json.dumps(results[-1]), flush=True)
        finally:
            server.stop()
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "clients": args.clients,
            "seconds_per_case": args.seconds, "record_bytes": 1160}  # fmt: skip
    out = RESULTS / "server_ingest.json"
    out.write_text(json.dumps({"machine": meta, "results": results}, indent=2) + "\n")
    plot(results, RESULTS / "server_ingest.png")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
