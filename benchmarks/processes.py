"""Aggregate records/s delivered *and stored* by 1, 2, 4 and 8 forked worker processes.

The shape of gunicorn ``--preload`` or a prefork pool: the parent configures
banyan, then forks the workers; each logs its share of ``--records`` as fast
as it can (pausing while its ring is three quarters full, so nothing is
dropped), flushes and leaves by ``os._exit``. Timed from the start signal
until a real ``banyan serve`` (on the same machine) reports every record
stored. Records are ``--record-bytes`` long on the wire (default ~200 B: a
short prompt and answer; 1.2 KB is the size throughput.py uses).

Run: ``python -m benchmarks.processes [--records N] [--record-bytes B]``
-> benchmarks/results/processes.json and processes.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import banyan
from banyan import _localserver

RESULTS = Path(__file__).parent / "results"
PROCESSES = (1, 2, 4, 8)


def worker(share: int, text: str, go: int, report: int) -> None:
    """Wait for the start byte, log ``share`` records, flush, report sent and dropped."""
    os.read(go, 1)
    logger = banyan._default._default()
    ring = logger._flusher.ring
    high = ring.max_bytes * 3 // 4
    for i in range(share):
        if i % 1000 == 0:
            while ring.bytes > high:
                time.sleep(0.001)
        banyan.log_prompt(input=text, output=text, model="gpt-4", duration_ms=12.0)
    ok = banyan.flush(timeout=120)
    stats = banyan.get_stats()
    line = f"{stats['logs_sent']} {stats['logs_dropped']} {int(ok)} {stats['retries']}"
    os.write(report, f"{line}\n".encode())


def run(
    server: _localserver.LocalServer, processes: int, records: int, text: str
) -> dict[str, object]:
    """Fork ``processes`` workers sharing ``records``; time until all are stored."""
    before = server.summary()["stored"]
    go_r, go_w = os.pipe()
    rep_r, rep_w = os.pipe()
    shares = [records // processes + (i < records % processes) for i in range(processes)]
    pids = []
    for share in shares:
        pid = os.fork()
        if pid == 0:
            try:
                worker(share, text, go_r, rep_w)
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(rep_w)
    start = time.perf_counter()
    os.write(go_w, b"x" * processes)
    stored = 0
    while stored < records and time.perf_counter() - start < 300:
        time.sleep(0.01)
        stored = server.summary()["stored"] - before
    elapsed = time.perf_counter() - start
    for pid in pids:
        os.waitpid(pid, 0)
    with os.fdopen(rep_r) as lines:
        reports = [tuple(map(int, line.split())) for line in lines]
    for fd in (go_r, go_w):
        os.close(fd)
    return {
        "processes": processes, "records": records, "stored": stored,
        "seconds": round(elapsed, 3), "records_per_s": round(stored / elapsed),
        "sent": sum(r[0] for r in reports), "dropped": sum(r[1] for r in reports),
        "lost": records - stored, "every_flush_ok": all(r[2] for r in reports),
        "retries": sum(r[3] for r in reports),
    }  # fmt: skip


def plot(result: dict[str, object], path: Path) -> None:
    """Records/s against worker processes, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    assert isinstance(runs, list)
    xs = [r["processes"] for r in runs]
    ys = [r["records_per_s"] for r in runs]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, marker="o")
    for x, y in zip(xs, ys, strict=True):
        ax.annotate(f"{y:,}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(0, max(ys) * 1.2)
    ax.set_xlabel("forked worker processes")
    ax.set_ylabel("records/s delivered and stored")
    title = f"{result['record_bytes']} B records, {result['cpus']} CPUs, server on the same machine"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    """Run every process count against one server; write JSON and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--record-bytes", type=int, default=200)
    args = parser.parse_args()
    # Two equal fields plus ~100 B of ids, timestamp, model and framing.
    text = "x" * max(1, (args.record_bytes - 100) // 2)
    with tempfile.TemporaryDirectory() as tmp:
        server = _localserver.start(Path(tmp))
        try:
            banyan.configure(api_key=server.api_key, base_url=server.base_url)
            runs = [run(server, n, args.records, text) for n in PROCESSES]
        finally:
            banyan.shutdown(timeout=5)
            server.stop()
    result = {
        "benchmark": "processes", "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "record_bytes": args.record_bytes, "runs": runs,
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "processes.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / "processes.png")
    for r in runs:
        print(f"{r['processes']} process(es): {r['records_per_s']:>9,} records/s, "
              f"{r['stored']:,}/{r['records']:,} stored, {r['lost']} lost, "
              f"{r['dropped']} dropped, {r['retries']} retries")  # fmt: skip
    return 0 if all(r["lost"] == 0 and r["dropped"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
